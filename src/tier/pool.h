// Pool: all second-tier elements of a memory path seen as one store. Capacity is
// reserved when memory is mapped (so over-commit fails early with ENOMEM) and space is
// allocated per block on first write-back, round-robin over the tiers that still have
// room. A Slot (tier/slot.h) names where a block's copy lives; all block I/O addresses
// the pool by slot (read_slots/write_slots: one batch per tier). Thread-safe.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <memory>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "common/mem_path.h"
#include "common/status.h"
#include "tier/buddy_allocator.h"
#include "tier/slot.h"
#include "tier/tier.h"

namespace emp::tier {

// One transfer between local memory and the pool: `length` bytes at `offset` within
// `slot` (so callers never see tier offsets).
struct SlotSpan {
  Slot slot;
  uint64_t offset;  // within the slot
  void* buffer;     // local memory (read: destination, write: source)
  size_t length;
};

// A tier batch of Pool::read_slots/write_slots that failed: the tier, the positions (in
// the caller's span array) of the batch's entries, and the error.
struct FailedBatch {
  const std::string& tier_name;
  std::span<const size_t> entries;
  Status status;
};

// fork(): what a child being forked gets from its parent's pool (tier/fork_watch.h).
struct ChildShare {
  struct Extent {
    unsigned tier;
    uint64_t offset;
    uint64_t bytes;
  };
  uint64_t id = 0;     // Pool::begin_child's
  uint64_t bytes = 0;  // reserved in the parent's pool for the child's copy
  std::vector<Extent> extents;  // that space, given to the child
  std::vector<std::unique_ptr<Tier::ChildPreparation>> preparations;  // one per tier (or null)
};

class Pool {
 public:
  explicit Pool(std::vector<std::unique_ptr<Tier>> tiers);
  // Opens a remote element (`<host>:<MiB>:<port>`); supplied by the network layer.
  using RemoteFactory = std::function<std::unique_ptr<Tier>(const TierSpec&)>;
  // Builds tiers from memory-path elements; throws with a message naming the element.
  // With `replicas` N > 1 every N consecutive elements become one MirroredTier (each
  // evicted block then has N copies on distinct elements); the element count must be a
  // multiple of N.
  static std::unique_ptr<Pool> from_specs(const std::vector<TierSpec>& specs, const RemoteFactory& remote = {},
                                          unsigned replicas = 1);
  // The same tiers; `lazy`: each opened at its first write (LazyTier: a forked child's own).
  static std::vector<std::unique_ptr<Tier>> tiers_from_specs(const std::vector<TierSpec>& specs,
                                                             const RemoteFactory& remote, unsigned replicas, bool lazy);

  uint64_t capacity() const noexcept { return capacity_; }
  uint64_t reserved() const noexcept { return reserved_.load(std::memory_order_relaxed); }
  uint64_t free_bytes() const noexcept;  // not allocated to any slot (or forked child)
  size_t tier_count() const noexcept { return tiers_.size(); }
  Tier& tier(size_t index) noexcept { return *tiers_[index].tier; }
  const Tier& tier(size_t index) const noexcept { return *tiers_[index].tier; }

  Status reserve(uint64_t bytes) noexcept;  // ENOMEM when the pool cannot hold it
  // In a forked child: Tier::abandon_in_child on every tier of the parent's pool.
  void abandon_in_child() noexcept {
    for (auto& entry : tiers_) entry.tier->abandon_in_child();
  }
  void unreserve(uint64_t bytes) noexcept;
  Result<Slot> allocate(uint64_t bytes) noexcept;
  void release(Slot slot, uint64_t bytes) noexcept;

  // --- fork() ---
  // Before the fork, in the parent. prepare_child_tiers() asks every tier for its
  // preparation (a donor attaches the child's connection: network, no locks held).
  // share_with_child() reserves `bytes` for the child's copy of the memory beside this
  // process's own reservations (ENOMEM when the pool cannot hold both: reserve at fork)
  // and gives the child that much of this pool's free space; the slots that exist now
  // stay readable for the child until end_child(). A child that cannot have its share
  // still reads them (share.extents empty).
  std::vector<std::unique_ptr<Tier::ChildPreparation>> prepare_child_tiers() noexcept;
  Status share_with_child(uint64_t bytes, ChildShare& share) noexcept;
  // In the parent, once the child and every process forked from it have ended (or
  // exec'd): its space comes back, and shared slots let go of meanwhile are freed.
  void end_child(const ChildShare& share) noexcept;
  // In the child (single-threaded), on its copy of the parent's pool: the child's own
  // pool — every tier continued (tier.h) with the share's extents as its only free
  // space, then `overflow` (tiers of the child's own, used once the share is full).
  std::unique_ptr<Pool> continue_in_child(ChildShare& share, std::vector<std::unique_ptr<Tier>> overflow);
  // Frees a slot a forked child may still read: now if no such child lives, else once
  // they all have ended.
  void release_shared(Slot slot, uint64_t bytes) noexcept;

  // Transfers `spans` with one batch per tier (per kMaxSpans spans: callers pass no more),
  // the tiers in order of first appearance. Noexcept and allocation-free. A read
  // stops at the first batch that fails; a write goes on with the other tiers. Each
  // failed batch is passed to `on_failure(const FailedBatch&)`. True if all succeeded.
  static constexpr size_t kMaxSpans = 512;
  template <typename OnFailure>
  bool read_slots(std::span<const SlotSpan> spans, OnFailure&& on_failure) noexcept {
    return transfer(spans, /*is_write=*/false, context_of(on_failure), &call_failure<OnFailure>);
  }
  template <typename OnFailure>
  bool write_slots(std::span<const SlotSpan> spans, OnFailure&& on_failure) noexcept {
    return transfer(spans, /*is_write=*/true, context_of(on_failure), &call_failure<OnFailure>);
  }
  Status register_buffer(void* base, size_t length) noexcept;

 private:
  using FailureCallback = void (*)(void* context, const FailedBatch& failed);
  template <typename OnFailure>
  static void* context_of(OnFailure& on_failure) noexcept {
    return const_cast<void*>(static_cast<const void*>(std::addressof(on_failure)));
  }
  template <typename OnFailure>
  static void call_failure(void* context, const FailedBatch& failed) noexcept {
    (*static_cast<std::remove_reference_t<OnFailure>*>(context))(failed);
  }
  bool transfer(std::span<const SlotSpan> spans, bool is_write, void* context, FailureCallback on_failure) noexcept;

  Pool() = default;  // continue_in_child() fills it
  uint64_t begin_child() noexcept;
  void end_child(uint64_t id) noexcept;
  // A forked child frees only what it allocated: slots from before its fork belong to
  // its ancestors.
  bool owns(Slot slot, uint64_t bytes) const noexcept;

  struct Member {
    std::unique_ptr<Tier> tier;
    std::unique_ptr<BuddyAllocator> allocator;
    std::vector<ChildShare::Extent> owned;  // in a forked child: its share of this tier (sorted)
    bool whole = true;                      // owns all of the tier's space
  };
  std::vector<Member> tiers_;
  size_t overflow_ = SIZE_MAX;  // tiers from here on are used once the others are full
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
