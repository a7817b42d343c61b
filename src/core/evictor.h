// Evictor: keeps resident memory under the budget. A background thread (`emp-evict`)
// wakes when resident memory crosses the high watermark (or the budget shrinks) and
// evicts CLOCK-chosen batches until it is back under the low watermark; fault handlers
// call evict_direct() only when the budget is exhausted. Thread-safe; start/stop from
// the owning engine only.
#pragma once

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "core/clock_policy.h"
#include "core/frame_budget.h"
#include "core/pager.h"

namespace emp::core {

class Evictor {
 public:
  Evictor(ClockPolicy& clock, Pager& pager, FrameBudget& budget, EngineCounters& counters, tier::Pool& pool,
          uint64_t block_size);
  ~Evictor();
  void start();  // throws if the staging buffer cannot be made
  void stop() noexcept;

  // Wakes the background thread if resident memory is above the high watermark.
  void kick() noexcept;
  // Evicts at least `bytes` (one batch) on the caller's thread. Returns bytes evicted.
  uint64_t evict_direct(uint64_t bytes, Scratch& scratch) noexcept;
  uint64_t min_headroom() const noexcept { return 4 * block_size_; }
  // Above the high watermark, and the managed memory does not all fit in the budget
  // (when it does, nothing ever needs evicting: e.g. a program given 100 % local).
  bool needs_eviction() const noexcept {
    return budget_.resident() > budget_.high_watermark(min_headroom()) &&
           clock_.regions().managed_bytes() > budget_.budget();
  }

 private:
  static constexpr size_t kBatchBlocks = 64;
  static constexpr uint64_t kBatchBytes = 8ULL << 20;
  void run() noexcept;
  uint64_t evict_batch(uint64_t max_bytes, Scratch& scratch) noexcept;

  ClockPolicy& clock_;
  Pager& pager_;
  FrameBudget& budget_;
  EngineCounters& counters_;
  tier::Pool& pool_;
  uint64_t block_size_;
  Scratch scratch_;  // the background thread's staging memory
  std::mutex mutex_;
  std::condition_variable wake_;
  bool kicked_ = false;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace emp::core
