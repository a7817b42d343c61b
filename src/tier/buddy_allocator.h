// BuddyAllocator: hands out power-of-two extents (4 KiB .. 2 MiB, naturally aligned) of
// one tier's space and merges them back on release. Its bookkeeping lives in raw
// anonymous memory (never the heap), so it is safe on the fault and eviction paths.
// Thread-safe (one mutex; held for a few list operations).
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>

#include "os/mapping.h"

namespace emp::tier {

class BuddyAllocator {
 public:
  static constexpr uint64_t kUnit = 4096;
  static constexpr int kMaxOrder = 9;  // 2 MiB

  enum class Start { kAllFree, kNoneFree };
  // Throws on mapping failure. kNoneFree: nothing is free until release()d (a forked
  // child's allocator over the space its parent gave it).
  explicit BuddyAllocator(uint64_t capacity_bytes, Start start = Start::kAllFree);
  // Offset of a free extent of at least `bytes` (rounded up to a power of two).
  std::optional<uint64_t> allocate(uint64_t bytes) noexcept;
  struct Extent {
    uint64_t offset;
    uint64_t bytes;
  };
  // The largest free extent no larger than `bytes` rounded up (at most 2 MiB).
  std::optional<Extent> take_up_to(uint64_t bytes) noexcept;
  void release(uint64_t offset, uint64_t bytes) noexcept;
  uint64_t free_bytes() const noexcept;
  uint64_t capacity_bytes() const noexcept { return static_cast<uint64_t>(units_) * kUnit; }
  static uint64_t rounded_size(uint64_t bytes) noexcept;

 private:
  static constexpr uint32_t kNone = UINT32_MAX;
  static int order_for(uint64_t bytes) noexcept;
  void push(uint32_t unit, int order) noexcept;
  void remove(uint32_t unit, int order) noexcept;

  mutable std::mutex mutex_;
  uint32_t units_;
  os::Mapping storage_;
  uint32_t* next_;
  uint32_t* prev_;
  // 1 + the order of the free extent starting at this unit, or 0 (so a fresh, untouched
  // mapping means nothing free: a forked child's allocators cost no page until used)
  int8_t* free_order_;
  uint32_t heads_[kMaxOrder + 1];
  uint64_t free_units_ = 0;
  // [frontier_, implicit_end_): whole max-order extents free but not on the lists yet.
  uint32_t frontier_ = 0;
  uint32_t implicit_end_ = 0;
};

}  // namespace emp::tier
