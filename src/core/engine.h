// Engine: the composition root of the pager. Built from Options, a DRAM budget and a
// second-tier Pool, it owns the userfaultfd, the region table, the frame budget, the
// CLOCK policy, the pager, the fault-handler threads and the evictor.
//
// Its API is what tests, emp-bench, libemp.so and emp-qemu use: map()/adopt() put memory
// under EMP, release() takes it back, set_budget() changes local DRAM at run time,
// stats() reads every counter. create() throws (setup zone); the rest is noexcept and
// thread-safe.
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "common/options.h"
#include "core/clock_policy.h"
#include "core/evictor.h"
#include "core/fault_handler.h"
#include "core/frame_budget.h"
#include "core/pager.h"
#include "core/region_table.h"
#include "core/stats.h"
#include "os/userfaultfd.h"
#include "tier/pool.h"

namespace emp::core {

struct EngineConfig {
  Options options;
  uint64_t budget_bytes = 0;  // local DRAM for managed memory
  std::unique_ptr<tier::Pool> pool;
  os::UffdOpenOptions uffd;
  FatalHandler fatal;  // default: log the message and abort()
  // How evicted pages are dropped; probed when unset (tests force the fallback).
  std::optional<os::DropMethod> drop_method;
};

class Engine {
 public:
  // Throws std::invalid_argument (bad configuration) or std::system_error (the OS
  // refused: userfaultfd permission, memory).
  static std::unique_ptr<Engine> create(EngineConfig config);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // New EMP-managed anonymous memory (zero-filled on first touch). ENOMEM when the
  // second-tier pool cannot hold it.
  Result<void*> map(size_t length) noexcept;
  // Puts an existing, never-touched anonymous private mapping under EMP. With
  // `reserve_pool` false the region takes second-tier space only as it is evicted (the
  // preload's heap arena, which is sized to the whole pool). With `may_defer` (an
  // application's mmap under libemp.so) and Options::defer, a mapping that fits in the
  // free budget is deferred: the kernel serves it until the budget needs room (see
  // Region::deferred and take_over_deferred).
  Status adopt(void* address, size_t length, bool reserve_pool = true, bool may_defer = false) noexcept;
  // Puts an existing MAP_SHARED mapping of a memfd or shmem file under EMP (QEMU's
  // memory-backend-memfd). Its file range must still be all holes; nothing else may map
  // that range (another process's mapping would not fault through EMP). Evicted and
  // discarded blocks become holes again (MADV_REMOVE). ENOTSUP when the kernel's
  // userfaultfd lacks shared-memory support. `reserve_pool` as for adopt().
  Status adopt_shared(void* address, size_t length, bool reserve_pool = true) noexcept;
  // Takes the region starting at `address` back from EMP (unmapping it if map() made it).
  Status release(void* address) noexcept;

  // --- What libemp.so needs to keep munmap, madvise, mprotect and fork exact on managed
  // memory (engine_ranges.cc). All noexcept; serialised with each other.
  bool overlaps(const void* start, size_t length) const noexcept;
  // `address` is where a managed region starts.
  bool is_region_start(const void* address) const noexcept;
  // Calls `visit(start, length, context)` for each part of the range that is not managed.
  void for_each_unmanaged_part(const void* start, size_t length, void (*visit)(void*, size_t, void*),
                               void* context) const noexcept;
  // Before munmap of a range: regions wholly inside are released; a region the range
  // cuts keeps its outer parts under EMP (a block cut in two is brought in and kept as
  // dirty memory). The caller unmaps the range afterwards.
  Status forget_range(void* start, size_t length) noexcept;
  // mremap of a range inside one deferred region, done by the kernel (its page tables move;
  // nothing is copied): the range leaves the region (which keeps its other parts) and
  // its new place becomes a deferred region of its own. `flags` and `new_address` as for
  // mremap; a MREMAP_FIXED target must already be out of the table (forget_range).
  // std::nullopt when this does not apply (not wholly in one deferred region, or growth
  // the free budget cannot hold): the caller moves the range by copying.
  std::optional<Result<void*>> remap_deferred(void* old_address, size_t old_size, size_t new_size, int flags,
                                              void* new_address) noexcept;
  // MADV_DONTNEED / MADV_FREE / MADV_REMOVE: the range reads zeros afterwards; whole
  // blocks give their DRAM and second-tier space back.
  Status discard_range(void* start, size_t length) noexcept;
  // mprotect took read access away from part of the range: evictions there copy
  // through /proc/self/mem.
  void note_unreadable(const void* start, size_t length) noexcept;
  // --- fork() (libemp.so's atfork handlers; engine_fork.cc, tier/fork_watch.h) ---
  // The second-tier space a forked child may need to write its copy of the memory:
  // each private region's reservation and, for regions that reserve none (the heap
  // arena), the blocks in use. Shared memory is not copied.
  uint64_t fork_copy_bytes() const noexcept;
  // Before fork: takes the maintenance lock and parks every engine thread between
  // batches (core/pause_gate.h), so no fill, eviction or take-over is in flight and the
  // child's copy of the block tables is consistent; nothing is written to the tables.
  void hold_for_fork() noexcept;
  // In the parent after fork: the slots that exist now are shared with the child (never
  // rewritten or freed while it lives); lets the engine threads go.
  void release_after_fork_in_parent() noexcept;
  // In the child: a new engine on the same regions (none of this engine's threads exists
  // here) with `pool` (Pool::continue_in_child) as its second tier. Resident blocks stay
  // resident (as dirty: the kernel dropped their write-protection), evicted ones are read
  // from the parent's slots. Throws std::system_error when the child cannot start one.
  std::unique_ptr<Engine> continue_in_child(std::unique_ptr<tier::Pool> pool);
  // Fallback for a child without an engine: calls `visit(start, length)` for each run
  // of managed memory whose data is not in this process (evicted, or mid-transfer).
  void for_each_absent_range(void (*visit)(uintptr_t start, size_t length, void* context), void* context) const noexcept;

  // Takes every deferred region over (engine_deferred.cc): registers it with userfaultfd
  // and makes each block holding pages the kernel populated a resident, dirty, cold block;
  // its charge becomes those blocks instead of its length. The evictor calls it before
  // choosing victims. A region a range operation or fork holds is left for the next call.
  void take_over_deferred() noexcept;
  uint64_t deferred_bytes() const noexcept { return deferred_bytes_.load(std::memory_order_relaxed); }

  void set_budget(uint64_t bytes) noexcept;
  uint64_t budget() const noexcept { return budget_.budget(); }
  uint64_t resident() const noexcept { return budget_.resident(); }
  // Bytes the budget may be exceeded by (documented slack).
  uint64_t slack() const noexcept { return budget_.slack(); }
  EngineStats stats() const;
  const Options& options() const noexcept { return options_; }
  const os::Userfaultfd& userfaultfd() const noexcept { return uffd_; }
  tier::Pool& pool() noexcept { return *pool_; }
  // One line for start-up logs: features in use, block sizes, budget, pool.
  std::string describe() const;

 private:
  Engine(EngineConfig config, os::Userfaultfd uffd);
  struct RegionKind {
    bool owns_memory = false;  // the region unmaps its memory when it goes
    bool reserve_pool = true;  // second-tier space is reserved up front
    bool shared_memory = false;
    bool may_defer = false;  // served by the kernel while the budget has room (Region::deferred)
  };
  bool take_over(Region& region) noexcept;
  bool discard_deferred(Region& region, uintptr_t cut_start, uintptr_t cut_end) noexcept;
  Status add_region(uintptr_t base, size_t length, RegionKind kind) noexcept;
  Status release_locked(void* address) noexcept;
  template <typename Change>
  Status for_each_cut(void* start, size_t length, Change&& change) noexcept;
  Status split_out(const std::shared_ptr<Region>& region, uintptr_t cut_start, uintptr_t cut_end);
  // The parts of `region` before and after [cut_start, cut_end), with its block sizes and
  // ownership (their blocks Empty). Throws std::bad_alloc or std::system_error.
  static std::vector<std::shared_ptr<Region>> pieces_outside(const Region& region, uintptr_t cut_start,
                                                             uintptr_t cut_end);
  // `region`'s second-tier reservation becomes the pieces' (what replaces it in the table);
  // `after` names the operation in the over-commit warning.
  void hand_over_reservation(const Region& region, const std::vector<std::shared_ptr<Region>>& pieces,
                             const char* after) noexcept;
  bool bring_in(Region& region, size_t index, uint32_t* word) noexcept;
  void drop_copy(Region& region, size_t index, uint32_t* word) noexcept;
  void free_slot(Region& region, size_t index, uint32_t* word) noexcept;
  Scratch* maintenance_scratch() noexcept;

  Options options_;
  os::Userfaultfd uffd_;
  std::unique_ptr<tier::Pool> pool_;
  EngineCounters counters_;
  FrameBudget budget_;
  RegionTable regions_;
  ClockPolicy clock_;
  Pager pager_;
  Evictor evictor_;
  FaultHandler faults_;
  // Lock order: maintenance_mutex_ → block busy bits → RegionTable's lock.
  std::mutex maintenance_mutex_;
  std::unique_ptr<Scratch> maintenance_scratch_;  // under maintenance_mutex_
  os::UffdOpenOptions uffd_options_;
  RegionTable::Snapshot fork_snapshot_;  // regions held across fork()
  std::atomic<uint64_t> deferred_bytes_{0};  // total length of the deferred regions
};

}  // namespace emp::core
