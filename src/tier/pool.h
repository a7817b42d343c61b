// Pool: all second-tier elements of a memory path seen as one store. Capacity is
// reserved when memory is mapped (so over-commit fails early with ENOMEM) and space is
// allocated per block on first write-back, round-robin over the tiers that still have
// room. A Slot names where a block's copy lives. Thread-safe.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <mutex>
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
  // The first `read_only` tiers are never allocated from (a forked child's view of its
  // parent's tiers: it reads the slots that existed at the fork, and writes elsewhere).
  explicit Pool(std::vector<std::unique_ptr<Tier>> tiers, size_t read_only = 0);
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

  // fork(): the slots that exist when a child forks stay readable for that child until it
  // ends. begin_child() (before the fork) returns the child's id for end_child().
  uint64_t begin_child() noexcept;
  void end_child(uint64_t id) noexcept;
  // Frees a slot a forked child may still read: now if no such child lives, else once
  // they all have ended.
  void release_shared(Slot slot, uint64_t bytes) noexcept;

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

  struct Deferred {
    Slot slot;
    uint64_t bytes;
    uint64_t dropped_at;  // fork clock when the owner let go of it
  };
  std::mutex fork_mutex_;  // guards the fork bookkeeping below
  uint64_t fork_clock_ = 0;
  std::map<uint64_t, uint64_t> live_children_;  // id -> fork clock at its fork (== id)
  std::vector<Deferred> deferred_;
};

}  // namespace emp::tier
