// FrameBudget: the local DRAM budget of the managed memory. Every resident block is
// charged here before it is mapped and uncharged when it is evicted. The budget can
// change at run time. Watermarks tell the background evictor when to start (high) and
// where to stop (low); the headroom between them follows the observed demand (set by the
// evictor from the rate of charges), so faults find free room without waiting while as
// little of the budget as possible stays empty. The fault path charges strictly within
// the budget and may exceed it only by the documented slack (one block per fault-handler
// thread) when every resident block is busy; a fault that finds no room at all waits on
// a futex that uncharge() signals (never a timed sleep). Lock-free, thread-safe.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>

#include "os/futex.h"

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
  // Charges `bytes` if that keeps resident within `limit` (below the budget: e.g. a
  // deferred region, which must leave the evictor's headroom free).
  // Not counted as demand (charged_total): a mapping is not a fault.
  bool try_charge_below(uint64_t bytes, uint64_t limit) noexcept {
    return charge_within(bytes, std::min(limit, budget()), /*as_demand=*/false);
  }
  // Replaces a charge of `from` bytes by one of `to` bytes (a deferred region taken over:
  // its length by what the kernel populated), not counted as demand.
  void recharge(uint64_t from, uint64_t to) noexcept {
    if (to >= from) {
      note_peak(resident_.fetch_add(to - from, std::memory_order_relaxed) + to - from);
    } else {
      uncharge(from - to);
    }
  }
  // Charges `bytes` if that keeps resident within budget + slack.
  bool try_charge_with_slack(uint64_t bytes) noexcept { return charge_within(bytes, budget() + slack_); }
  // Last resort when nothing can be evicted (logged by the caller).
  void force_charge(uint64_t bytes) noexcept {
    charged_total_.fetch_add(bytes, std::memory_order_relaxed);
    note_peak(resident_.fetch_add(bytes, std::memory_order_relaxed) + bytes);
  }
  void uncharge(uint64_t bytes) noexcept {
    resident_.fetch_sub(bytes, std::memory_order_relaxed);
    if (waiters_.load(std::memory_order_seq_cst) > 0) {
      room_.fetch_add(1, std::memory_order_release);
      os::futex_wake_all(room_);
    }
  }
  // Charges `bytes` within budget + slack, waiting once (up to `timeout_ns`, or until an
  // uncharge) when they do not fit; false if they still do not (the caller retries or
  // decides). Only reached when the evictor fell behind: in steady state faults find
  // room (evictions_direct counts the exceptions).
  bool wait_and_charge(uint64_t bytes, uint64_t timeout_ns) noexcept {
    if (try_charge_with_slack(bytes)) return true;
    waiters_.fetch_add(1, std::memory_order_seq_cst);
    uint32_t seen = room_.load(std::memory_order_acquire);
    bool charged = try_charge_with_slack(bytes);  // an uncharge before `seen` was read
    if (!charged) {
      os::futex_wait(room_, seen, timeout_ns);
      charged = try_charge_with_slack(bytes);
    }
    waiters_.fetch_sub(1, std::memory_order_relaxed);
    return charged;
  }
  // Bytes ever charged (the evictor derives the demand rate from it).
  uint64_t charged_total() const noexcept { return charged_total_.load(std::memory_order_relaxed); }

  // Free headroom the evictor keeps: what the demand needs (set_demand_headroom), at
  // least `min_bytes`, at most 1/16 of the budget (and never more than half).
  uint64_t headroom(uint64_t min_bytes) const noexcept {
    uint64_t b = budget();
    uint64_t wanted = std::min(demand_headroom_.load(std::memory_order_relaxed), b / 16);
    return std::min(std::max(wanted, min_bytes), b / 2);
  }
  void set_demand_headroom(uint64_t bytes) noexcept { demand_headroom_.store(bytes, std::memory_order_relaxed); }
  uint64_t low_watermark(uint64_t min_headroom) const noexcept { return budget() - headroom(min_headroom); }
  uint64_t high_watermark(uint64_t min_headroom) const noexcept { return budget() - headroom(min_headroom) / 2; }

 private:
  // `as_demand`: a fault's charge, counted in charged_total (the evictor's demand rate).
  bool charge_within(uint64_t bytes, uint64_t limit, bool as_demand = true) noexcept {
    uint64_t current = resident_.load(std::memory_order_relaxed);
    do {
      if (current + bytes > limit) return false;
    } while (!resident_.compare_exchange_weak(current, current + bytes, std::memory_order_relaxed));
    if (as_demand) charged_total_.fetch_add(bytes, std::memory_order_relaxed);
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
  std::atomic<uint64_t> charged_total_{0};
  std::atomic<uint64_t> demand_headroom_{UINT64_MAX};  // until the evictor has measured demand: 1/16
  std::atomic<uint32_t> waiters_{0};
  std::atomic<uint32_t> room_{0};  // futex word: bumped by uncharge() while someone waits
  uint64_t slack_;
};

}  // namespace emp::core
