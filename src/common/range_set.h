// RangeSet: a set of address ranges, kept merged and sorted, with O(log n) insertion,
// removal of any sub-range (splitting what it cuts through) and containment queries.
// libemp.so keeps the program's MADV_WIPEONFORK ranges in one (a forked child discards
// them). Not thread-safe: its owner locks.
#pragma once

#include <cstdint>
#include <iterator>
#include <map>

namespace emp {

class RangeSet {
 public:
  // Adds [start, end); overlapping and touching ranges merge. Throws std::bad_alloc.
  void add(uintptr_t start, uintptr_t end) {
    if (start >= end) return;
    auto it = ranges_.upper_bound(start);
    if (it != ranges_.begin() && std::prev(it)->second >= start) {
      --it;
      start = it->first;
    }
    while (it != ranges_.end() && it->first <= end) {
      if (it->second > end) end = it->second;
      it = ranges_.erase(it);
    }
    ranges_.emplace(start, end);
  }
  // Removes [start, end) from every range it cuts. Throws std::bad_alloc (splitting).
  void remove(uintptr_t start, uintptr_t end) {
    if (start >= end) return;
    auto it = ranges_.upper_bound(start);
    if (it != ranges_.begin() && std::prev(it)->second > start) --it;
    while (it != ranges_.end() && it->first < end) {
      auto [first, last] = *it;
      it = ranges_.erase(it);
      if (first < start) ranges_.emplace(first, start);
      if (last > end) {
        ranges_.emplace(end, last);
        break;
      }
    }
  }
  // True when [start, end) lies within one range of the set.
  bool contains(uintptr_t start, uintptr_t end) const noexcept {
    auto it = ranges_.upper_bound(start);
    if (it == ranges_.begin()) return false;
    --it;
    return it->first <= start && end <= it->second;
  }
  bool empty() const noexcept { return ranges_.empty(); }
  size_t size() const noexcept { return ranges_.size(); }
  template <typename Visit>
  void for_each(Visit&& visit) const {
    for (const auto& [start, end] : ranges_) visit(start, end);
  }

 private:
  std::map<uintptr_t, uintptr_t> ranges_;  // start -> end, disjoint and not touching
};

}  // namespace emp
