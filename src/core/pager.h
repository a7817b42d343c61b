// Pager: the block transitions of the fault and eviction paths — fill a block (zeros or
// second-tier data, critical subblock first), resolve a write-protect fault (the block
// becomes dirty), and evict a batch of blocks (drop clean ones, write back dirty ones
// under write-protect so a racing write is never lost).
//
// Every method is noexcept and allocation-free; the caller holds the block's busy bit
// (fills, evictions) and passes a Scratch, its thread's registered staging memory.
// Thread-safe: different threads work on different blocks.
#pragma once

#include <span>

#include "common/options.h"
#include "common/unique_fd.h"
#include "core/clock_policy.h"
#include "core/frame_budget.h"
#include "core/region.h"
#include "core/stages.h"
#include "core/stats.h"
#include "os/mapping.h"
#include "os/page_drop.h"
#include "os/userfaultfd.h"
#include "tier/pool.h"

namespace emp::core {

// Per-thread staging memory for tier I/O, registered with every tier.
struct Scratch {
  static Result<Scratch> create(tier::Pool& pool, size_t bytes) noexcept;
  os::Mapping staging;
  static constexpr size_t kMaxSpans = tier::Pool::kMaxSpans;
  tier::SlotSpan spans[kMaxSpans];
};

class Pager {
 public:
  Pager(os::Userfaultfd& uffd, tier::Pool& pool, FrameBudget& budget, EngineCounters& counters, const Options& options,
        os::DropMethod drop_method);
  os::DropMethod drop_method() const noexcept { return drop_method_; }

  // Fills a non-resident block the caller holds busy (`word` as seen when taken) and
  // publishes it resident. Returns false (block left as it was) on a tier error.
  // `clock` laps the tier read and the install (the faulting thread is woken then).
  bool fill(Region& region, size_t index, uint32_t word, uintptr_t fault_address, bool is_write, uint32_t epoch,
            Scratch& scratch, FaultClock& clock) noexcept;
  // Readahead: fills up to `count` blocks from `first` on, stopping at the first one that
  // is resident, busy, or would exceed the DRAM budget (it never evicts). One tier batch
  // per tier and one UFFDIO_COPY for the run; the blocks are mapped clean and
  // write-protected, or writable and dirty when `as_write` (a write stream). Takes and
  // releases the blocks' busy bits itself. Returns the number of blocks filled.
  size_t fill_ahead(Region& region, size_t first, size_t count, bool as_write, Scratch& scratch) noexcept;
  static constexpr size_t kMaxAhead = 256;  // blocks per readahead
  // Write fault on a resident clean block the caller holds busy: mark dirty, unprotect.
  // With `run_after`, the next blocks up to that many that are resident, clean and idle
  // become dirty and writable in the same call (a write stream).
  void make_dirty(Region& region, size_t index, uint32_t word, size_t run_after = 0) noexcept;
  // Evicts victims (busy held); releases every victim. Returns the bytes evicted.
  // `clock` laps the write-protect, copy, write-back and unmap stages.
  uint64_t evict(std::span<Victim> victims, uint32_t epoch, Scratch& scratch, EvictClock& clock) noexcept;

  Status wake(uintptr_t address) noexcept;
  // A block of a deferred region being taken over (busy held, registered): maps zero
  // pages into the pages `present` (mincore's vector for the block) says the kernel has
  // not populated, so the block is whole, as every resident block is.
  void fill_holes(const BlockRange& range, const unsigned char* present) noexcept;

 private:
  // UFFDIO_COPY of a run; `quiet` for readahead, whose run may cross into a mapping with
  // other protections (ENOENT) and then simply stops.
  bool install(uintptr_t destination, const std::byte* source, size_t length, bool write_protect,
               bool quiet = false) noexcept;
  bool read_subblocks(Region& region, size_t index, size_t first, size_t last, std::byte* staging, Scratch& scratch) noexcept;
  // Write-protects the staged victims (members: victim indices; spans in the same order)
  // with as few calls as possible; drops those that fail. Returns how many stay.
  size_t freeze(std::span<Victim> victims, std::span<bool> written, Scratch& scratch,
                std::span<size_t> members) noexcept;
  static constexpr size_t kMaxRunGap = 256;  // blocks checked between two victims of one run
  // Writes the dirty victims (written[i] set) to their slots; clears written[i] for each
  // one that did not reach the second tier.
  void write_back(std::span<Victim> victims, std::span<bool> written, Scratch& scratch, EvictClock& clock) noexcept;
  void drop(const Region& region, const BlockRange& range) noexcept;

  os::Userfaultfd& uffd_;
  tier::Pool& pool_;
  FrameBudget& budget_;
  EngineCounters& counters_;
  bool csf_;
  os::DropMethod drop_method_;
  os::Mapping zeros_;  // never written: reads as zeros, source of first-touch fills
  UniqueFd self_memory_;  // /proc/self/mem
};

}  // namespace emp::core
