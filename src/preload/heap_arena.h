// HeapArena: the one EMP-managed range that mimalloc's memory comes from.
//
// libemp.so reserves a large range of address space, puts it under EMP without a pool
// reservation (it is sized to the whole second tier; space is taken as blocks are
// evicted), and serves every mmap that mimalloc makes from it. So "is this pointer the
// application's heap?" is one range test, and free() can tell mimalloc's blocks from
// glibc's (EMP's own allocations). Space handed back by munmap is discarded (it reads
// zeros when handed out again) and reused, first fit, aligned for mimalloc's segments.
// Thread-safe (one mutex; no allocation: the free list is a fixed array).
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>

namespace emp::preload {

class HeapArena {
 public:
  HeapArena(uintptr_t base, size_t length) noexcept;
  HeapArena(const HeapArena&) = delete;
  HeapArena& operator=(const HeapArena&) = delete;

  bool contains(const void* p) const noexcept {
    uintptr_t a = reinterpret_cast<uintptr_t>(p);
    return a - base_ < length_;
  }
  bool contains(const void* p, size_t length) const noexcept {
    uintptr_t a = reinterpret_cast<uintptr_t>(p);
    return a >= base_ && length <= length_ && a - base_ <= length_ - length;
  }
  uintptr_t base() const noexcept { return base_; }
  size_t length() const noexcept { return length_; }

  // A fresh range of `length` bytes (rounded up to 64 KiB); nullptr when full.
  void* allocate(size_t length) noexcept;
  // Returns a range (or part of one) to the free list; the caller has discarded it.
  void free(void* start, size_t length) noexcept;

  // fork(): held across it so the child's free list is consistent.
  void lock() noexcept { mutex_.lock(); }
  void unlock() noexcept { mutex_.unlock(); }

 private:
  struct Range {
    uintptr_t start, end;
  };
  static constexpr size_t kMaxRanges = 16384;
  bool insert_locked(size_t position, Range range) noexcept;

  const uintptr_t base_;
  const size_t length_;
  std::mutex mutex_;
  Range free_[kMaxRanges];  // sorted, disjoint, not adjacent
  size_t count_ = 0;
};

}  // namespace emp::preload
