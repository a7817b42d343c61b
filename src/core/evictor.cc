#include "core/evictor.h"

#include <pthread.h>


#include "common/log.h"
#include "os/futex.h"

namespace emp::core {

Evictor::Evictor(ClockPolicy& clock, Pager& pager, FrameBudget& budget, EngineCounters& counters, tier::Pool& pool,
                 uint64_t block_size)
    : clock_(clock),
      pager_(pager),
      budget_(budget),
      counters_(counters),
      pool_(pool),
      block_size_(block_size) {}

Evictor::~Evictor() { stop(); }

void Evictor::start() {
  auto scratch = Scratch::create(pool_, std::max<uint64_t>(kBatchBytes, block_size_));
  throw_if_error(scratch.status());
  scratch_ = std::move(*scratch);
  stopping_.store(false);
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "emp-evict");
    run();
  });
}

void Evictor::stop() noexcept {
  stopping_.store(true);
  kicked_.store(1);
  os::futex_wake_all(kicked_);
  if (thread_.joinable()) thread_.join();
}

void Evictor::pause() noexcept {
  if (!thread_.joinable()) return;
  pause_gate_.request();
  kicked_.store(1);
  os::futex_wake_all(kicked_);
  pause_gate_.wait_parked(1);
}

void Evictor::resume() noexcept {
  if (thread_.joinable()) pause_gate_.resume();
}

void Evictor::kick() noexcept {
  if (!needs_eviction()) return;
  if (kicked_.load(std::memory_order_relaxed) == 0 && kicked_.exchange(1, std::memory_order_acq_rel) == 0)
    os::futex_wake_all(kicked_);
}

uint64_t Evictor::evict_batch(uint64_t max_bytes, Scratch& scratch) noexcept {
  EvictClock stages(&counters_.evict_stages, monotonic_ns());
  if (take_over_) take_over_();
  Victim victims[kBatchBlocks];
  RegionTable::Snapshot keep_alive;
  size_t count = clock_.select(victims, std::min<uint64_t>(max_bytes, scratch.staging.size()), &keep_alive);
  stages.lap(EvictStage::kSelect);
  if (count == 0) return 0;
  return pager_.evict({victims, count}, clock_.epoch(), scratch, stages);
}

uint64_t Evictor::evict_direct(uint64_t bytes, Scratch& scratch) noexcept {
  uint64_t evicted = evict_batch(std::max(bytes, block_size_), scratch);
  if (evicted) counters_.evictions_direct.fetch_add(1, std::memory_order_relaxed);
  return evicted;
}

void Evictor::track_demand(uint64_t now_ns) noexcept {
  // Headroom = what the faults charge in kDemandHorizonNs (an exponential average of the
  // charge rate), so the next faults find room while the evictor works on the batch
  // after; the budget is otherwise kept full (a larger cache). FrameBudget clamps it.
  constexpr uint64_t kSampleNs = 5'000'000;
  constexpr uint64_t kDemandHorizonNs = 4'000'000;
  if (now_ns - demand_sample_ns_ < kSampleNs) return;
  uint64_t total = budget_.charged_total();
  if (demand_sample_ns_ != 0) {
    double rate = static_cast<double>(total - demand_sample_bytes_) / static_cast<double>(now_ns - demand_sample_ns_);
    demand_rate_ = demand_rate_ < 0 ? rate : 0.75 * demand_rate_ + 0.25 * rate;  // bytes per ns
    budget_.set_demand_headroom(static_cast<uint64_t>(demand_rate_ * kDemandHorizonNs));
  }
  demand_sample_ns_ = now_ns;
  demand_sample_bytes_ = total;
}

void Evictor::run() noexcept {
  constexpr uint64_t kIdleCheckNs = 20'000'000;  // re-check the watermarks without a kick
  for (;;) {
    if (kicked_.load(std::memory_order_acquire) == 0) os::futex_wait(kicked_, 0, kIdleCheckNs);
    if (stopping_.load()) return;
    if (pause_gate_.requested()) {
      pause_gate_.park();
      continue;
    }
    kicked_.store(0, std::memory_order_release);
    track_demand(monotonic_ns());
    if (!needs_eviction()) continue;
    // Evict down to the low watermark, batch by batch. Faults keep charging meanwhile:
    // a batch is never smaller than half the headroom (up to a full batch), or the
    // evictor would chase each new block with a batch of its own, paying two TLB
    // shootdowns per block.
    while (budget_.resident() > budget_.low_watermark(min_headroom())) {
      if (stopping_.load()) return;
      if (pause_gate_.requested()) break;
      uint64_t low = budget_.low_watermark(min_headroom());
      uint64_t floor = std::min(batch_target(), budget_.headroom(min_headroom()) / 2);
      uint64_t want = std::max(budget_.resident() - std::min(low, budget_.resident()), floor);
      if (evict_batch(std::min(want, kBatchBytes), scratch_) == 0) {
        // Every resident block is busy right now: wait for a kick (or the idle check).
        os::futex_wait(kicked_, 0, kIdleCheckNs / 20);
        break;
      }
    }
  }
}

}  // namespace emp::core
