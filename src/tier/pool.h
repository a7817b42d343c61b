// Pool: all second-tier elements of a memory path seen as one store. Capacity is
// reserved when memory is mapped (so over-commit fails early with ENOMEM) and space is
// allocated per block on first write-back, round-robin over the tiers that still have
// room. A Slot names where a block's copy lives. Thread-safe.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/mem_path.h"
#include "common/status.h"
#include "tier/buddy_allocator.h"
#include "tier/tier.h"

namespace emp::tier {

// A block's place in the pool, packed in 64 bits for the block table.
struct Slot {
  static constexpr uint64_t kNone = ~0ULL;
  uint64_t packed = kNone;

  static Slot make(unsigned tier, uint64_t offset) noexcept { return Slot{(offset >> 12) << 8 | tier}; }
  bool valid() const noexcept { return packed != kNone; }
  unsigned tier() const noexcept { return static_cast<unsigned>(packed & 0xff); }
  uint64_t offset() const noexcept { return (packed >> 8) << 12; }
};

class Pool {
 public:
  explicit Pool(std::vector<std::unique_ptr<Tier>> tiers);
  // Opens a remote element (`<host>:<MiB>:<port>`); supplied by the network layer.
  using RemoteFactory = std::function<std::unique_ptr<Tier>(const TierSpec&)>;
  // Builds tiers from memory-path elements; throws with a message naming the element.
  static std::unique_ptr<Pool> from_specs(const std::vector<TierSpec>& specs, const RemoteFactory& remote = {});

  uint64_t capacity() const noexcept { return capacity_; }
  uint64_t reserved() const noexcept { return reserved_.load(std::memory_order_relaxed); }
  size_t tier_count() const noexcept { return tiers_.size(); }
  Tier& tier(size_t index) noexcept { return *tiers_[index].tier; }
  const Tier& tier(size_t index) const noexcept { return *tiers_[index].tier; }

  Status reserve(uint64_t bytes) noexcept;  // ENOMEM when the pool cannot hold it
  void unreserve(uint64_t bytes) noexcept;
  Result<Slot> allocate(uint64_t bytes) noexcept;
  void release(Slot slot, uint64_t bytes) noexcept;

  // Reads spans whose offsets are relative to the slot (they are rebased in place).
  Status read_batch(Slot slot, std::span<IoSpan> spans_in_slot) noexcept;
  Status register_buffer(void* base, size_t length) noexcept;

 private:
  struct Member {
    std::unique_ptr<Tier> tier;
    std::unique_ptr<BuddyAllocator> allocator;
  };
  std::vector<Member> tiers_;
  uint64_t capacity_ = 0;
  std::atomic<uint64_t> reserved_{0};
  std::atomic<unsigned> cursor_{0};
};

}  // namespace emp::tier
