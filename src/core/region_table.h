// RegionTable: the set of managed regions, looked up by address on every fault.
// Readers take a shared lock for a binary search and leave with a shared_ptr; writers
// (map/unmap, rare) take it exclusively and bump a generation so the CLOCK can refresh
// its snapshot. Thread-safe.
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
  uint64_t generation_ = 0;
  std::atomic<uint64_t> managed_bytes_{0};
};

}  // namespace emp::core
