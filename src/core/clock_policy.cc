#include "core/clock_policy.h"

namespace emp::core {

size_t ClockPolicy::select(std::span<Victim> out, uint64_t max_bytes, RegionTable::Snapshot* keep_alive) noexcept {
  std::lock_guard lock(mutex_);
  uint64_t generation = table_.generation();
  if (generation != snapshot_generation_) {
    snapshot_ = table_.snapshot();
    snapshot_generation_ = generation;
    if (region_cursor_ >= snapshot_->size()) region_cursor_ = block_cursor_ = 0;
  }
  *keep_alive = snapshot_;
  const RegionSet& regions = *snapshot_;
  if (regions.empty() || out.empty()) return 0;
  const uint64_t total_blocks = regions.block_count();

  size_t found = 0;
  uint64_t bytes = 0;
  Region* current = regions[region_cursor_].get();  // O(log n): looked up when the hand moves on
  // Heat is at most 3, so four full sweeps find every evictable block.
  for (uint64_t visited = 0; visited < 4 * total_blocks + 4 && found < out.size(); ++visited) {
    if (block_cursor_ >= current->block_count()) {
      block_cursor_ = 0;
      if (++region_cursor_ >= regions.size()) {
        region_cursor_ = 0;
        epoch_.fetch_add(1, std::memory_order_relaxed);
      }
      current = regions[region_cursor_].get();
      continue;
    }
    Region& region = *current;
    size_t index = block_cursor_++;
    if (region.retired()) continue;
    BlockMeta& block = region.block(index);
    if (!block.cool()) continue;
    uint32_t word;
    if (!block.try_acquire(&word)) continue;
    if (!BlockMeta::is_resident(word) || !BlockMeta::is_cold(word) || region.retired()) {
      block.release(word);
      continue;
    }
    uint64_t length = region.block_range(index).length;
    if (found > 0 && bytes + length > max_bytes) {
      block.release(word);
      --block_cursor_;  // take it next time
      break;
    }
    out[found++] = Victim{&region, index, word};
    bytes += length;
  }
  return found;
}

}  // namespace emp::core
