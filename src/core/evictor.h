// Evictor: keeps resident memory under the budget. A background thread (`emp-evict`)
// wakes when resident memory crosses the high watermark (or the budget shrinks) and
// evicts CLOCK-chosen batches until it is back under the low watermark; fault handlers
// call evict_direct() only when the budget is exhausted. The thread also measures the
// demand (the rate faults charge the budget) and sizes the headroom from it
// (FrameBudget::set_demand_headroom). Before choosing victims it has the engine take
// deferred regions over (set_take_over). Thread-safe; start/stop from the owning engine only.
#pragma once

#include <atomic>
#include <functional>
#include <thread>

#include "core/clock_policy.h"
#include "core/frame_budget.h"
#include "core/pager.h"
#include "core/pause_gate.h"

namespace emp::core {

class Evictor {
 public:
  Evictor(ClockPolicy& clock, Pager& pager, FrameBudget& budget, EngineCounters& counters, tier::Pool& pool,
          uint64_t block_size);
  ~Evictor();
  // Called before each batch picks victims, on the thread that evicts: takes deferred
  // regions (core/region.h) over, so their pages can be evicted and their charge shrinks
  // to what the kernel populated. Set once, before start().
  void set_take_over(std::function<void()> take_over) { take_over_ = std::move(take_over); }
  void start();  // throws if the staging buffer cannot be made
  void stop() noexcept;
  // Parks the background thread between two batches (core/pause_gate.h); resume() lets
  // it go. For fork(), after the fault threads are parked (they may wait for room).
  void pause() noexcept;
  void resume() noexcept;

  // Wakes the background thread if resident memory is above the high watermark.
  // Lock-free: an atomic exchange, and a futex wake only when the thread was idle.
  void kick() noexcept;
  // Evicts at least `bytes` (one batch) on the caller's thread. Returns bytes evicted.
  uint64_t evict_direct(uint64_t bytes, Scratch& scratch) noexcept;
  // Low enough to keep nearly all the budget as cache, high enough that the space between
  // the watermarks holds a full batch: each batch costs two TLB shootdowns however small.
  uint64_t min_headroom() const noexcept { return 2 * batch_target(); }
  // A full batch: up to kBatchBlocks blocks, kBatchTargetBytes and 1/64 of the budget
  // (the headroom costs cache), at least one block.
  uint64_t batch_target() const noexcept {
    uint64_t target = std::min<uint64_t>({kBatchBlocks * block_size_, kBatchTargetBytes, budget_.budget() / 64});
    return std::max(block_size_, target);
  }
  // Above the high watermark, and the managed memory does not all fit in the budget
  // (when it does, nothing ever needs evicting: e.g. a program given 100 % local).
  bool needs_eviction() const noexcept {
    return budget_.resident() > budget_.high_watermark(min_headroom()) &&
           clock_.regions().managed_bytes() > budget_.budget();
  }

 private:
  static constexpr size_t kBatchBlocks = 256;              // victims per batch (Pager::evict's limit)
  static constexpr uint64_t kBatchTargetBytes = 1ULL << 20;  // what the evictor aims a batch at
  static constexpr uint64_t kBatchBytes = 8ULL << 20;        // the most one batch moves (staging)
  void run() noexcept;
  void track_demand(uint64_t now_ns) noexcept;
  uint64_t evict_batch(uint64_t max_bytes, Scratch& scratch) noexcept;

  ClockPolicy& clock_;
  Pager& pager_;
  FrameBudget& budget_;
  EngineCounters& counters_;
  tier::Pool& pool_;
  uint64_t block_size_;
  std::function<void()> take_over_;
  Scratch scratch_;  // the background thread's staging memory
  std::atomic<uint32_t> kicked_{0};  // futex word: 1 when there is work (or a stop)
  std::atomic<bool> stopping_{false};
  PauseGate pause_gate_;
  // Demand tracking (evictor thread only).
  uint64_t demand_sample_ns_ = 0, demand_sample_bytes_ = 0;
  double demand_rate_ = -1;
  std::thread thread_;
};

}  // namespace emp::core
