// PauseGate: lets one thread stop a group of worker threads at a point where they hold
// nothing — the fault threads between two batches of userfaultfd messages, the evictor
// between two eviction batches — and let them go again. fork() uses it (Engine::
// hold_for_fork): with every engine thread parked no block changes state, so the child's
// copy of the block tables is consistent without taking (and writing) every block's busy
// bit, which would copy every page of the tables in both processes after the fork.
//
// Workers check requested() in their loop and call park() there; the controller calls
// request(), wakes the workers from whatever they sleep on, wait_parked(n), and later
// resume(). Waits are futex waits (std::atomic::wait), never timed sleeps. Thread-safe.
#pragma once

#include <atomic>
#include <cstdint>

namespace emp::core {

class PauseGate {
 public:
  bool requested() const noexcept { return requested_.load(std::memory_order_acquire) != 0; }
  // Worker: counts itself parked and sleeps until resume().
  void park() noexcept {
    parked_.fetch_add(1, std::memory_order_acq_rel);
    parked_.notify_all();
    while (requested_.load(std::memory_order_acquire)) requested_.wait(1, std::memory_order_acquire);
    parked_.fetch_sub(1, std::memory_order_acq_rel);
  }
  void request() noexcept { requested_.store(1, std::memory_order_release); }
  // Controller: until `workers` threads are parked.
  void wait_parked(uint32_t workers) noexcept {
    for (uint32_t seen = parked_.load(std::memory_order_acquire); seen < workers;
         seen = parked_.load(std::memory_order_acquire))
      parked_.wait(seen, std::memory_order_acquire);
  }
  void resume() noexcept {
    requested_.store(0, std::memory_order_release);
    requested_.notify_all();
  }

 private:
  std::atomic<uint32_t> requested_{0};
  std::atomic<uint32_t> parked_{0};
};

}  // namespace emp::core
