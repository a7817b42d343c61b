// PoolMemory: vmd's donated DRAM, allocated and locked (mlock) at start, so the memory
// is held for the donor's clients from the first moment; and ExtentAllocator, a
// first-fit allocator of lease extents over it (1 MiB granules, coalescing). A lease's
// memory is its own memory file (lease_memory.h): while it lives, the pool lends it the
// extent's pages (unlocked and returned to the kernel, lend()), and takes them back
// (allocated and locked again, take_back()) when the lease ends, so vmd holds the
// pool's size in all. Owned by the daemon's main thread; not thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>

namespace emp::vmd {

inline constexpr uint64_t kLeaseGranule = 1ULL << 20;

class PoolMemory {
 public:
  // Throws std::system_error when the memory cannot be mapped; warns (and continues
  // unlocked) when RLIMIT_MEMLOCK forbids locking.
  explicit PoolMemory(uint64_t bytes);
  ~PoolMemory();
  PoolMemory(const PoolMemory&) = delete;
  PoolMemory& operator=(const PoolMemory&) = delete;

  std::byte* data() const noexcept { return base_; }
  uint64_t size() const noexcept { return size_; }
  bool locked() const noexcept { return locked_; }
  // Returns the pages of [offset, offset+bytes) to the kernel (a lease's own memory
  // takes their place), and re-allocates (and re-locks) them when the lease ends.
  void lend(uint64_t offset, uint64_t bytes) noexcept;
  void take_back(uint64_t offset, uint64_t bytes) noexcept;

 private:
  std::byte* base_ = nullptr;
  uint64_t size_ = 0;
  bool locked_ = false;
};

class ExtentAllocator {
 public:
  explicit ExtentAllocator(uint64_t bytes);
  // Offset of a free extent of `bytes` (rounded up to the granule), or nullopt.
  std::optional<uint64_t> allocate(uint64_t bytes);
  void release(uint64_t offset, uint64_t bytes);
  uint64_t free_bytes() const noexcept { return free_bytes_; }
  static uint64_t round(uint64_t bytes) noexcept { return (bytes + kLeaseGranule - 1) / kLeaseGranule * kLeaseGranule; }

 private:
  std::map<uint64_t, uint64_t> free_;  // offset -> length
  uint64_t free_bytes_ = 0;
};

}  // namespace emp::vmd
