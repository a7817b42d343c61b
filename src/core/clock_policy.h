// ClockPolicy: chooses eviction victims. A CLOCK hand sweeps the block tables of all
// regions; each resident block carries a heat (0..3) that the sweep lowers by one per
// pass, and only cold blocks are taken. Heat comes from refaults: a block that faults
// back in within one sweep of its eviction gains frequency (kept across evictions),
// and a write to a clean block warms it. So hot blocks survive several passes while
// blocks touched once leave first (recency- and frequency-aware, not FIFO).
//
// Victims are returned with their busy bit held. Thread-safe: the hand is guarded by a
// mutex that only evicting threads take (the evictor, and fault handlers that must
// evict directly).
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <span>

#include "core/region_table.h"

namespace emp::core {

struct Victim {
  Region* region;
  size_t index;
  uint32_t word;  // the block's word when busy was taken
};

class ClockPolicy {
 public:
  explicit ClockPolicy(const RegionTable& table) : table_(table) {}
  const RegionTable& regions() const noexcept { return table_; }

  // Fills `out` with up to out.size() victims totalling at most max_bytes (at least one
  // if any block can be evicted). The snapshot keeps the victims' regions alive.
  size_t select(std::span<Victim> out, uint64_t max_bytes, RegionTable::Snapshot* keep_alive) noexcept;
  // Completed sweeps; used to measure refault distance.
  uint32_t epoch() const noexcept { return epoch_.load(std::memory_order_relaxed); }

 private:
  const RegionTable& table_;
  std::mutex mutex_;
  RegionTable::Snapshot snapshot_;
  uint64_t snapshot_generation_ = ~0ULL;
  size_t region_cursor_ = 0;
  size_t block_cursor_ = 0;
  std::atomic<uint32_t> epoch_{0};
};

}  // namespace emp::core
