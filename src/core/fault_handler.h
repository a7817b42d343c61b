// FaultHandler: N threads (`emp-fault-<i>`) that read batches of userfaultfd messages
// and resolve them: missing faults fill the block (charging the DRAM budget first,
// evicting directly only when the evictor cannot keep up), write-protect faults mark the
// block dirty. No global lock: each fault takes only its block's busy bit. Readahead
// (EMP_PREFETCH, EMP_ELASTIC): after a fill, the region's fault locality may bring the
// following blocks in with one batch. Threads sleep in poll() and are stopped through an
// eventfd, and parked for fork() through another (pause/resume). Start/stop from the
// owning engine.
#pragma once

#include <linux/userfaultfd.h>

#include <algorithm>
#include <functional>
#include <thread>
#include <vector>

#include "common/unique_fd.h"
#include "core/evictor.h"
#include "core/pager.h"
#include "core/pause_gate.h"
#include "core/region_table.h"

namespace emp::core {

// Called when a fault cannot be served (second tier unreadable): must not return.
using FatalHandler = std::function<void(const char* message)>;

// How long a fault thread polls for the next fault before it sleeps. Waking a sleeping
// thread costs an inter-processor interrupt (tens of µs in a VM), polling costs a CPU:
// poll when faults come close together (a tmpfs or shared-memory tier: a few µs apart),
// sleep at once when they are far apart (a disk or network tier, or an idle program).
// The budget is twice the exponential average of the gap between fault batches, and no
// polling once that average passes kMaxSpinNs. One per fault thread; not thread-safe.
class WaitPolicy {
 public:
  static constexpr uint64_t kMaxSpinNs = 50'000;
  void note_gap(uint64_t gap_ns) noexcept {
    gap_ns = std::min<uint64_t>(gap_ns, 4 * kMaxSpinNs);
    average_gap_ns_ = (3 * average_gap_ns_ + gap_ns) / 4;
  }
  uint64_t spin_ns() const noexcept { return average_gap_ns_ > kMaxSpinNs ? 0 : 2 * average_gap_ns_; }

 private:
  uint64_t average_gap_ns_ = kMaxSpinNs / 2;
};

class FaultHandler {
 public:
  FaultHandler(os::Userfaultfd& uffd, RegionTable& regions, Pager& pager, Evictor& evictor, ClockPolicy& clock,
               FrameBudget& budget, EngineCounters& counters, tier::Pool& pool, const Options& options,
               FatalHandler fatal);
  // Staging memory each fault thread needs: a block, or the readahead window.
  static uint64_t staging_bytes(const Options& options) noexcept;
  ~FaultHandler();
  void start(unsigned threads);  // throws
  void stop() noexcept;
  // Parks every fault thread between two batches (core/pause_gate.h) and returns once
  // all are parked; resume() lets them go. Faults arriving meanwhile wait in the kernel.
  void pause() noexcept;
  void resume() noexcept;

 private:
  void run(unsigned index, Scratch* scratch) noexcept;
  void handle(const uffd_msg& message, RegionTable::View& regions, Scratch& scratch, uint64_t start_ns) noexcept;
  void on_missing(Region& region, uintptr_t address, bool is_write, Scratch& scratch, uint64_t start_ns) noexcept;
  void on_write_protect(Region& region, uintptr_t address) noexcept;
  // How many blocks after `index` a write-protect fault there should unprotect too.
  size_t write_run_after(Region& region, size_t index) noexcept;
  void charge(uint64_t bytes, Scratch& scratch, FaultClock& clock) noexcept;
  // After a fill: the region's locality decides whether the next blocks come along.
  void read_ahead(Region& region, size_t index, bool is_write, Scratch& scratch) noexcept;

  os::Userfaultfd& uffd_;
  RegionTable& regions_;
  Pager& pager_;
  Evictor& evictor_;
  ClockPolicy& clock_;
  FrameBudget& budget_;
  EngineCounters& counters_;
  tier::Pool& pool_;
  uint64_t block_size_;
  uint64_t staging_bytes_;
  bool prefetch_, elastic_;
  uint32_t max_window_;  // blocks per readahead window (1 = readahead off)
  FatalHandler fatal_;
  UniqueFd stop_fd_;
  UniqueFd pause_fd_;  // readable while a pause is requested: wakes threads sleeping in poll()
  PauseGate pause_gate_;
  std::vector<Scratch> scratches_;
  std::vector<std::thread> threads_;
};

}  // namespace emp::core
