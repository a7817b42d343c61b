#include "preload/heap_arena.h"

#include <algorithm>
#include <cstring>

#include "os/page.h"

namespace emp::preload {
namespace {

constexpr size_t kGranule = 64 << 10;
constexpr size_t kMaxAlignment = 32 << 20;

size_t alignment_for(size_t length) noexcept {
  size_t alignment = kGranule;
  while (alignment < kMaxAlignment && alignment * 2 <= length) alignment *= 2;
  return alignment;
}

}  // namespace

HeapArena::HeapArena(uintptr_t base, size_t length) noexcept : base_(base), length_(length) {
  free_[0] = Range{base, base + length};
  count_ = 1;
}

bool HeapArena::insert_locked(size_t position, Range range) noexcept {
  if (count_ == kMaxRanges) return false;
  std::memmove(&free_[position + 1], &free_[position], (count_ - position) * sizeof(Range));
  free_[position] = range;
  ++count_;
  return true;
}

void* HeapArena::allocate(size_t length) noexcept {
  if (length == 0 || length > length_) return nullptr;
  length = (length + kGranule - 1) & ~(kGranule - 1);
  size_t alignment = alignment_for(length);
  std::lock_guard lock(mutex_);
  for (size_t i = 0; i < count_; ++i) {
    Range& r = free_[i];
    uintptr_t start = (r.start + alignment - 1) & ~(alignment - 1);
    if (start >= r.end || r.end - start < length) continue;
    uintptr_t end = start + length;
    Range before{r.start, start}, after{end, r.end};
    if (before.start == before.end && after.start == after.end) {
      std::memmove(&free_[i], &free_[i + 1], (count_ - i - 1) * sizeof(Range));
      --count_;
    } else if (before.start == before.end) {
      r = after;
    } else if (after.start == after.end) {
      r = before;
    } else {
      r = before;
      if (!insert_locked(i + 1, after)) {
        r = Range{before.start, after.end};  // free list full: give up this split
        continue;
      }
    }
    return reinterpret_cast<void*>(start);
  }
  return nullptr;
}

void HeapArena::free(void* p, size_t length) noexcept {
  uintptr_t start = os::page_floor(reinterpret_cast<uintptr_t>(p));
  uintptr_t end = os::page_ceil(reinterpret_cast<uintptr_t>(p) + length);
  start = std::max(start, base_);
  end = std::min(end, base_ + length_);
  if (start >= end) return;
  std::lock_guard lock(mutex_);
  // First free range that ends at or after `start`.
  size_t i = static_cast<size_t>(
      std::lower_bound(free_, free_ + count_, start, [](const Range& r, uintptr_t a) { return r.end < a; }) - free_);
  // Merge with every range that touches or overlaps [start, end).
  size_t j = i;
  while (j < count_ && free_[j].start <= end) {
    start = std::min(start, free_[j].start);
    end = std::max(end, free_[j].end);
    ++j;
  }
  if (j > i) {
    free_[i] = Range{start, end};
    std::memmove(&free_[i + 1], &free_[j], (count_ - j) * sizeof(Range));
    count_ -= j - i - 1;
  } else {
    (void)insert_locked(i, Range{start, end});  // list full: the range is lost to reuse
  }
}

}  // namespace emp::preload
