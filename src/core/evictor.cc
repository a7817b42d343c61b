#include "core/evictor.h"

#include <pthread.h>

#include <chrono>

#include "common/log.h"

namespace emp::core {

Evictor::Evictor(ClockPolicy& clock, Pager& pager, FrameBudget& budget, EngineCounters& counters, tier::Pool& pool,
                 uint64_t block_size)
    : clock_(clock), pager_(pager), budget_(budget), counters_(counters), pool_(pool), block_size_(block_size) {}

Evictor::~Evictor() { stop(); }

void Evictor::start() {
  auto scratch = Scratch::create(pool_, std::max<uint64_t>(kBatchBytes, block_size_));
  throw_if_error(scratch.status());
  scratch_ = std::move(*scratch);
  stopping_ = false;
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "emp-evict");
    run();
  });
}

void Evictor::stop() noexcept {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Evictor::kick() noexcept {
  if (!needs_eviction()) return;
  {
    std::lock_guard lock(mutex_);
    if (kicked_) return;
    kicked_ = true;
  }
  wake_.notify_one();
}

uint64_t Evictor::evict_batch(uint64_t max_bytes, Scratch& scratch) noexcept {
  EvictClock stages(&counters_.evict_stages, monotonic_ns());
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

void Evictor::run() noexcept {
  using namespace std::chrono_literals;
  for (;;) {
    {
      std::unique_lock lock(mutex_);
      wake_.wait_for(lock, 20ms, [this] { return stopping_ || kicked_; });
      if (stopping_) return;
      kicked_ = false;
    }
    if (!needs_eviction()) continue;
    // Evict down to the low watermark, batch by batch.
    while (budget_.resident() > budget_.low_watermark(min_headroom())) {
      {
        std::lock_guard lock(mutex_);
        if (stopping_) return;
      }
      uint64_t excess = budget_.resident() - budget_.low_watermark(min_headroom());
      if (evict_batch(std::min(excess, kBatchBytes), scratch_) == 0) {
        std::this_thread::sleep_for(1ms);  // everything busy right now
        break;
      }
    }
  }
}

}  // namespace emp::core
