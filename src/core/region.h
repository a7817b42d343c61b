// Region: one range of EMP-managed virtual memory and its block table.
//
// Blocks are aligned to the block size in the address space; the first and last
// block are cut to the region's edges, so unaligned regions work (an edge block is
// smaller). The block table lives in raw anonymous memory (no heap). A Region is
// immutable after construction apart from its blocks' metadata; it is shared through
// shared_ptr by the fault handlers and the evictor and is thread-safe.
#pragma once

#include <algorithm>
#include <atomic>
#include <memory>
#include <cstddef>
#include <cstdint>

#include "core/block.h"
#include "os/mapping.h"

namespace emp::core {

struct BlockRange {
  uintptr_t start;
  size_t length;
  void* pointer() const noexcept { return reinterpret_cast<void*>(start); }
};

// Spatial locality of the missing faults in one zone of a region (32 MiB, so a large
// heap holding both streaming and sparse data gets a window per part), for readahead
// (FaultHandler): the block of the last fault and the current window (blocks fetched per
// fault). Updated without locks by every fault thread; a hint, never a correctness matter.
class FaultLocality {
 public:
  struct Window {
    uint32_t blocks = 1;    // blocks to bring in with this fault (1 = the block alone)
    bool backward = false;  // the blocks before it rather than after it
  };
  // Records a fault on block `index` and returns the window for it. Forward faults
  // within the window (a stream) double it up to `max_window`; with `elastic`, faults
  // near the last one in either direction count too (a backward run reads backward), and
  // a far fault halves the window instead of resetting it.
  // The window now (blocks), without recording a fault.
  uint32_t window() const noexcept { return window_.load(std::memory_order_relaxed); }
  Window next_window(size_t index, bool elastic, uint32_t max_window) noexcept {
    size_t last = last_block_.exchange(index, std::memory_order_relaxed);
    uint32_t window = window_.load(std::memory_order_relaxed);
    size_t distance = SIZE_MAX;
    bool backward = false;
    if (last != SIZE_MAX && index > last) distance = index - last;
    if (elastic && last != SIZE_MAX && index < last) {
      distance = last - index;
      backward = true;
    }
    if (distance <= size_t{window} + 1) {
      window = std::min(std::max(2u, window * 2), max_window);
    } else {
      window = elastic ? std::max(1u, window / 2) : 1;
    }
    window_.store(window, std::memory_order_relaxed);
    return Window{window, backward};
  }

 private:
  std::atomic<size_t> last_block_{SIZE_MAX};
  std::atomic<uint32_t> window_{1};
};

class Region {
 public:
  // Throws std::system_error when the block table cannot be mapped.
  Region(uintptr_t base, size_t length, uint64_t block_size, uint64_t subblock_size, bool owns_memory);
  ~Region();
  Region(const Region&) = delete;
  Region& operator=(const Region&) = delete;

  uintptr_t base() const noexcept { return base_; }
  size_t length() const noexcept { return length_; }
  uintptr_t end() const noexcept { return base_ + length_; }
  bool contains(uintptr_t address) const noexcept { return address >= base_ && address < end(); }
  uint64_t block_size() const noexcept { return block_size_; }
  uint64_t subblock_size() const noexcept { return subblock_size_; }
  size_t block_count() const noexcept { return block_count_; }
  bool owns_memory() const noexcept { return owns_memory_; }
  // Before the region is shared: the caller keeps the memory after all.
  void disown() noexcept { owns_memory_ = false; }
  size_t metadata_bytes() const noexcept { return table_bytes_; }
  // A retired region is being removed: no new fills or evictions may start in it.
  bool retired() const noexcept { return retired_.load(std::memory_order_acquire); }
  void retire() noexcept { retired_.store(true, std::memory_order_release); }
  // The application took read access away from part of the region (mprotect): copies
  // out of it must go through /proc/self/mem, which ignores protections.
  bool may_be_unreadable() const noexcept { return unreadable_.load(std::memory_order_acquire); }
  void mark_may_be_unreadable() noexcept { unreadable_.store(true, std::memory_order_release); }
  // Shared memory (a MAP_SHARED memfd or shmem mapping, e.g. QEMU's memory-backend-memfd):
  // its pages live in the file, so dropping them must punch holes (MADV_REMOVE) for a
  // later touch to fault again. Set before the region is shared.
  bool shared_memory() const noexcept { return shared_memory_; }
  void set_shared_memory() noexcept { shared_memory_ = true; }
  // Deferred: not registered with userfaultfd, so the kernel serves its pages (at kernel
  // speed) while the budget has room for the whole region, which is charged at its full
  // length; every block stays Empty in the table. The engine takes the region over
  // (Engine::take_over_deferred: registers it and makes the pages the kernel populated
  // resident blocks) when the budget needs room. One way: a region is never deferred again.
  bool deferred() const noexcept { return deferred_.load(std::memory_order_acquire); }
  void set_deferred() noexcept { deferred_.store(true, std::memory_order_release); }  // before it is shared
  void end_deferral() noexcept { deferred_.store(false, std::memory_order_release); }  // every block held
  static constexpr unsigned kLocalityZoneShift = 25;  // 32 MiB
  static constexpr size_t kSmallTableBytes = 16 << 10;  // tables up to this size live on the heap
  // The locality record of the zone holding block `index`.
  FaultLocality& locality(size_t index) noexcept {
    return zones_[(block_range(index).start - base_) >> kLocalityZoneShift];
  }
  // Gives the pages of [start, start + length) back to the kernel; the next touch faults.
  // Returns 0 or -1 with errno, like madvise.
  int drop_pages(uintptr_t start, size_t length) const noexcept;

  size_t block_index(uintptr_t address) const noexcept { return (address - first_block_start_) / block_size_; }
  BlockMeta& block(size_t index) noexcept { return blocks_[index]; }
  BlockRange block_range(size_t index) const noexcept;
  // Second-tier space one block needs (its length rounded up to a power of two).
  uint64_t slot_bytes(size_t index) const noexcept;
  // Sum of slot_bytes over all blocks: the most second-tier space the region can use.
  uint64_t pool_bytes() const noexcept;
  // What the region reserved in the pool when it was mapped (0 when set_unreserved()).
  uint64_t reserved_pool_bytes() const noexcept { return reserves_pool_ ? pool_bytes() : 0; }
  void set_unreserved() noexcept { reserves_pool_ = false; }

 private:
  uintptr_t base_;
  size_t length_;
  uint64_t block_size_;
  uint64_t subblock_size_;
  uintptr_t first_block_start_;
  size_t block_count_;
  bool owns_memory_;
  bool reserves_pool_ = true;
  bool shared_memory_ = false;
  std::atomic<bool> retired_{false};
  std::atomic<bool> unreadable_{false};
  std::atomic<bool> deferred_{false};
  // The block table, then the locality zones: a small one on the heap (a program with
  // a hundred thousand small mappings must not get as many extra kernel mappings), a
  // large one in a mapping of its own (zero pages until touched).
  size_t table_bytes_ = 0;
  std::unique_ptr<std::byte[]> small_table_;
  os::Mapping table_;
  BlockMeta* blocks_;
  FaultLocality* zones_;
};

}  // namespace emp::core
