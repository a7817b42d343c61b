// RegionTable: the set of managed regions, looked up by address on every fault.
// The table is an immutable sorted vector replaced as a whole by writers (map/unmap,
// rare) under an exclusive lock, which also bump an atomic generation. The fault path
// takes no lock and copies no shared_ptr per fault: each fault thread keeps a View — a
// snapshot it refreshes only when the generation moves — and searches it; the snapshot
// keeps its regions alive. Other readers use find()/snapshot() (shared lock). Thread-safe.
#pragma once

#include <atomic>
#include <memory>
#include <shared_mutex>
#include <vector>

#include "core/region.h"

namespace emp::core {

class RegionTable {
 public:
  using Snapshot = std::shared_ptr<const std::vector<std::shared_ptr<Region>>>;

  std::shared_ptr<Region> find(uintptr_t address) const noexcept;
  // The region holding `address` in `snapshot`, or null (no locks, no copies).
  static Region* find_in(const std::vector<std::shared_ptr<Region>>& snapshot, uintptr_t address) noexcept;

  // One thread's cached view (a fault handler's): find() costs one atomic load and a
  // binary search; the snapshot is refreshed when the table changed since.
  class View {
   public:
    explicit View(const RegionTable& table) noexcept : table_(table) {}
    Region* find(uintptr_t address) noexcept {
      uint64_t generation = table_.generation();
      if (generation != generation_ || !snapshot_) {
        snapshot_ = table_.snapshot();
        generation_ = generation;
      }
      return find_in(*snapshot_, address);
    }
    // Lets go of the snapshot (before sleeping: released regions are freed meanwhile).
    void drop() noexcept { snapshot_.reset(); }

   private:
    const RegionTable& table_;
    Snapshot snapshot_;
    uint64_t generation_ = ~0ULL;
  };
  // Throws std::invalid_argument when the range overlaps a managed region.
  void insert(std::shared_ptr<Region> region);
  std::shared_ptr<Region> remove(uintptr_t base) noexcept;
  // Regions that intersect [start, end), in address order.
  std::vector<std::shared_ptr<Region>> overlapping(uintptr_t start, uintptr_t end) const;
  // Swaps `old_region` for `pieces` (non-overlapping parts of its range) atomically.
  void replace(const std::shared_ptr<Region>& old_region, const std::vector<std::shared_ptr<Region>>& pieces);
  Snapshot snapshot() const noexcept;
  uint64_t generation() const noexcept;
  // Total length of the managed regions.
  uint64_t managed_bytes() const noexcept { return managed_bytes_.load(std::memory_order_relaxed); }

 private:
  mutable std::shared_mutex mutex_;
  std::shared_ptr<std::vector<std::shared_ptr<Region>>> regions_ = std::make_shared<std::vector<std::shared_ptr<Region>>>();
  std::atomic<uint64_t> generation_{0};
  std::atomic<uint64_t> managed_bytes_{0};
};

}  // namespace emp::core
