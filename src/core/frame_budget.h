// FrameBudget: the local DRAM budget of the managed memory. Every resident block is
// charged here before it is mapped and uncharged when it is evicted. The budget can
// change at run time. Watermarks tell the background evictor when to start (high) and
// where to stop (low); the fault path charges strictly within the budget and may exceed
// it only by the documented slack (one block per fault-handler thread) when every
// resident block is busy. Lock-free, thread-safe.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>

namespace emp::core {

class FrameBudget {
 public:
  FrameBudget(uint64_t budget, uint64_t slack) : budget_(budget), slack_(slack) {}

  uint64_t budget() const noexcept { return budget_.load(std::memory_order_relaxed); }
  uint64_t resident() const noexcept { return resident_.load(std::memory_order_relaxed); }
  uint64_t slack() const noexcept { return slack_; }
  uint64_t peak() const noexcept { return peak_.load(std::memory_order_relaxed); }
  void set_budget(uint64_t bytes) noexcept { budget_.store(bytes, std::memory_order_relaxed); }

  // Charges `bytes` if that keeps resident within the budget.
  bool try_charge(uint64_t bytes) noexcept { return charge_within(bytes, budget()); }
  // Charges `bytes` if that keeps resident within budget + slack.
  bool try_charge_with_slack(uint64_t bytes) noexcept { return charge_within(bytes, budget() + slack_); }
  // Last resort when nothing can be evicted (logged by the caller).
  void force_charge(uint64_t bytes) noexcept { note_peak(resident_.fetch_add(bytes, std::memory_order_relaxed) + bytes); }
  void uncharge(uint64_t bytes) noexcept { resident_.fetch_sub(bytes, std::memory_order_relaxed); }

  // Free headroom the evictor keeps: 1/16 of the budget, at least `min_bytes`, at most half.
  uint64_t headroom(uint64_t min_bytes) const noexcept {
    uint64_t b = budget();
    return std::min(std::max(b / 16, min_bytes), b / 2);
  }
  uint64_t low_watermark(uint64_t min_headroom) const noexcept { return budget() - headroom(min_headroom); }
  uint64_t high_watermark(uint64_t min_headroom) const noexcept { return budget() - headroom(min_headroom) / 2; }

 private:
  bool charge_within(uint64_t bytes, uint64_t limit) noexcept {
    uint64_t current = resident_.load(std::memory_order_relaxed);
    do {
      if (current + bytes > limit) return false;
    } while (!resident_.compare_exchange_weak(current, current + bytes, std::memory_order_relaxed));
    note_peak(current + bytes);
    return true;
  }
  void note_peak(uint64_t value) noexcept {
    uint64_t seen = peak_.load(std::memory_order_relaxed);
    while (value > seen && !peak_.compare_exchange_weak(seen, value, std::memory_order_relaxed)) {
    }
  }

  std::atomic<uint64_t> budget_;
  std::atomic<uint64_t> resident_{0};
  std::atomic<uint64_t> peak_{0};
  uint64_t slack_;
};

}  // namespace emp::core
