// RegionTable: the set of managed regions, looked up by address on every fault.
//
// Each version of the set is an immutable balanced search tree (RegionSet: a treap
// keyed by base address, with subtree sizes and block counts). A writer (map, unmap, a
// split by munmap) builds the next version under an exclusive lock, sharing every node
// but the O(log n) on its path, and bumps an atomic generation — so a program with a
// hundred thousand mappings pays O(log n) per mmap and munmap, not a copy of the table.
// The fault path takes no lock and copies no shared_ptr per fault: each fault thread
// keeps a View — a version it refreshes only when the generation moves — and searches
// it; the version keeps its regions alive. Other readers use find()/snapshot() (shared
// lock). Thread-safe.
#pragma once

#include <atomic>
#include <memory>
#include <shared_mutex>
#include <vector>

#include "core/region.h"

namespace emp::core {

// One immutable version of the set: lookups, in-order iteration and positional access.
class RegionSet {
 public:
  struct Node;
  using NodePtr = std::shared_ptr<const Node>;
  struct Node {
    std::shared_ptr<Region> region;
    NodePtr left, right;
    uint64_t priority;  // heap order of the treap (a hash of the base address)
    size_t count;       // regions in this subtree
    uint64_t blocks;    // their blocks
  };

  RegionSet() = default;
  explicit RegionSet(NodePtr root) noexcept : root_(std::move(root)) {}

  size_t size() const noexcept { return root_ ? root_->count : 0; }
  bool empty() const noexcept { return !root_; }
  uint64_t block_count() const noexcept { return root_ ? root_->blocks : 0; }
  // The region holding `address`, or null. O(log n), no allocation.
  Region* find(uintptr_t address) const noexcept;
  const std::shared_ptr<Region>* find_shared(uintptr_t address) const noexcept;
  // The index-th region in address order (index < size()). O(log n).
  const std::shared_ptr<Region>& operator[](size_t index) const noexcept;
  // Regions that intersect [start, end), in address order. O(log n + found).
  std::vector<std::shared_ptr<Region>> overlapping(uintptr_t start, uintptr_t end) const;

  // New versions (this one is unchanged). Throw std::bad_alloc.
  RegionSet with(std::shared_ptr<Region> region) const;
  RegionSet without(uintptr_t base) const;

  // In-order iteration over the regions.
  class Iterator {
   public:
    using value_type = std::shared_ptr<Region>;
    using difference_type = std::ptrdiff_t;
    Iterator() = default;
    explicit Iterator(const Node* root);
    const std::shared_ptr<Region>& operator*() const noexcept { return path_.back()->region; }
    Iterator& operator++();
    bool operator==(const Iterator& other) const noexcept {
      return path_.empty() ? other.path_.empty() : !other.path_.empty() && path_.back() == other.path_.back();
    }

   private:
    void descend_left(const Node* node);
    std::vector<const Node*> path_;  // the current node last, with the ancestors still to visit
  };
  Iterator begin() const { return Iterator(root_.get()); }
  Iterator end() const { return Iterator(); }

 private:
  NodePtr root_;
};

class RegionTable {
 public:
  using Snapshot = std::shared_ptr<const RegionSet>;

  std::shared_ptr<Region> find(uintptr_t address) const noexcept;

  // One thread's cached view (a fault handler's): find() costs one atomic load and a
  // tree search; the version is refreshed when the table changed since.
  class View {
   public:
    explicit View(const RegionTable& table) noexcept : table_(table) {}
    Region* find(uintptr_t address) noexcept {
      uint64_t generation = table_.generation();
      if (generation != generation_ || !snapshot_) {
        snapshot_ = table_.snapshot();
        generation_ = generation;
      }
      return snapshot_->find(address);
    }
    // Lets go of the version (before sleeping: released regions are freed meanwhile).
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
  void publish(RegionSet next);  // exclusive lock held

  mutable std::shared_mutex mutex_;
  Snapshot current_ = std::make_shared<const RegionSet>();
  std::atomic<uint64_t> generation_{0};
  std::atomic<uint64_t> managed_bytes_{0};
};

}  // namespace emp::core
