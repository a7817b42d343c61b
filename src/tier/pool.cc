#include "tier/pool.h"

#include <algorithm>
#include <stdexcept>

#include "tier/file_tier.h"
#include "tier/mirrored_tier.h"

namespace emp::tier {

// Allocated extents must be expressible as slots, and slots must start where tier I/O may.
static_assert(BuddyAllocator::kUnit % Slot::kOffsetUnit == 0 && Slot::kOffsetUnit % kTierAlignment == 0,
              "slot offsets must be aligned for tier I/O");

Pool::Pool(std::vector<std::unique_ptr<Tier>> tiers, size_t read_only) {
  if (tiers.size() <= read_only) throw std::invalid_argument("a pool needs at least one second-tier element");
  if (tiers.size() > Slot::kMaxTiers) throw std::invalid_argument("a pool holds at most 255 tiers");
  for (auto& tier : tiers) {
    std::unique_ptr<BuddyAllocator> allocator;
    if (tiers_.size() >= read_only) {
      allocator = std::make_unique<BuddyAllocator>(tier->capacity());
      capacity_ += allocator->free_bytes();
    }
    tiers_.push_back(Member{std::move(tier), std::move(allocator)});
  }
}

std::unique_ptr<Pool> Pool::from_specs(const std::vector<TierSpec>& specs, const RemoteFactory& remote,
                                       unsigned replicas) {
  if (replicas > 1 && specs.size() % replicas != 0)
    throw std::invalid_argument("EMP_REPLICAS=" + std::to_string(replicas) +
                                " mirrors the second-tier elements in groups of " + std::to_string(replicas) +
                                " (in memory-path order); the memory path has " + std::to_string(specs.size()));
  std::vector<std::unique_ptr<Tier>> tiers;
  for (const TierSpec& spec : specs) {
    if (spec.kind != TierSpec::Kind::kRemote) {
      tiers.push_back(FileTier::open(spec));
    } else if (remote) {
      tiers.push_back(remote(spec));
    } else {
      throw std::invalid_argument("memory path element '" + spec.element + "': remote donors are not available here");
    }
  }
  if (replicas <= 1) return std::make_unique<Pool>(std::move(tiers));
  std::vector<std::unique_ptr<Tier>> mirrors;
  for (size_t first = 0; first < tiers.size(); first += replicas) {
    std::vector<std::unique_ptr<Tier>> copies;
    for (size_t i = first; i < first + replicas; ++i) copies.push_back(std::move(tiers[i]));
    mirrors.push_back(MirroredTier::create(std::move(copies)));
  }
  return std::make_unique<Pool>(std::move(mirrors));
}

Status Pool::reserve(uint64_t bytes) noexcept {
  uint64_t current = reserved_.load(std::memory_order_relaxed);
  do {
    if (bytes > capacity_ - current) return Status::error(ENOMEM, "second-tier pool is full");
  } while (!reserved_.compare_exchange_weak(current, current + bytes, std::memory_order_relaxed));
  return Status::ok();
}

void Pool::unreserve(uint64_t bytes) noexcept { reserved_.fetch_sub(bytes, std::memory_order_relaxed); }

Result<Slot> Pool::allocate(uint64_t bytes) noexcept {
  unsigned start = cursor_.fetch_add(1, std::memory_order_relaxed);
  for (size_t i = 0; i < tiers_.size(); ++i) {
    unsigned index = static_cast<unsigned>((start + i) % tiers_.size());
    if (!tiers_[index].allocator || tiers_[index].tier->health() == TierHealth::kLost) continue;
    if (auto offset = tiers_[index].allocator->allocate(bytes)) return Slot::make(index, *offset);
  }
  return Status::error(ENOSPC, "second-tier pool has no free extent");
}

void Pool::release(Slot slot, uint64_t bytes) noexcept {
  if (slot.valid() && tiers_[slot.tier()].allocator) tiers_[slot.tier()].allocator->release(slot.offset(), bytes);
}

uint64_t Pool::begin_child() noexcept {
  std::lock_guard lock(fork_mutex_);
  uint64_t id = ++fork_clock_;
  live_children_[id] = id;
  return id;
}

void Pool::end_child(uint64_t id) noexcept {
  std::vector<Deferred> now_free;
  {
    std::lock_guard lock(fork_mutex_);
    live_children_.erase(id);
    uint64_t oldest = live_children_.empty() ? ~0ULL : live_children_.begin()->second;
    // A slot let go of at clock T may be read by the children forked at or before T.
    auto keep = std::partition(deferred_.begin(), deferred_.end(), [&](const Deferred& d) { return d.dropped_at >= oldest; });
    now_free.assign(keep, deferred_.end());
    deferred_.erase(keep, deferred_.end());
  }
  for (const Deferred& d : now_free) release(d.slot, d.bytes);
}

void Pool::release_shared(Slot slot, uint64_t bytes) noexcept {
  if (!slot.valid()) return;
  {
    std::lock_guard lock(fork_mutex_);
    if (!live_children_.empty()) {
      try {
        deferred_.push_back(Deferred{slot, bytes, fork_clock_});
        return;
      } catch (...) {
        return;  // no memory for the note: the slot stays allocated (never reused while shared)
      }
    }
  }
  release(slot, bytes);
}

bool Pool::transfer(std::span<const SlotSpan> spans, bool is_write, void* context,
                    FailureCallback on_failure) noexcept {
  bool all_ok = true;
  // Callers stay within kMaxSpans; a longer array is done kMaxSpans at a time.
  for (size_t base = 0; base < spans.size(); base += kMaxSpans) {
    const size_t count = std::min(spans.size() - base, kMaxSpans);
    bool grouped[kMaxSpans];
    std::fill_n(grouped, count, false);
    for (size_t head = 0; head < count; ++head) {
      if (grouped[head]) continue;
      const unsigned tier_index = spans[base + head].slot.tier();
      IoSpan batch[kMaxSpans];
      size_t positions[kMaxSpans];
      size_t n = 0;
      for (size_t j = head; j < count; ++j) {
        const SlotSpan& span = spans[base + j];
        if (grouped[j] || span.slot.tier() != tier_index) continue;
        grouped[j] = true;
        batch[n] = IoSpan{span.slot.offset() + span.offset, span.buffer, span.length};
        positions[n++] = base + j;
      }
      Tier& tier = *tiers_[tier_index].tier;
      Status status = is_write ? tier.write_batch({batch, n}) : tier.read_batch({batch, n});
      if (status) continue;
      all_ok = false;
      on_failure(context, FailedBatch{tier.name(), {positions, n}, status});
      if (!is_write) return false;
    }
  }
  return all_ok;
}

Status Pool::register_buffer(void* base, size_t length) noexcept {
  for (auto& member : tiers_) {
    Status status = member.tier->register_buffer(base, length);
    if (!status) return status;
  }
  return Status::ok();
}

}  // namespace emp::tier
