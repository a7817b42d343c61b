// dram:auto (also dram:-1): the local DRAM budget follows the process's cgroup memory
// limit and the host's memory pressure.
//
// read_memory_signals() reads what the decision needs from a /proc root and a cgroup
// root (both injectable, so tests feed fake files): the tightest memory limit on this
// process's cgroup path (v2 memory.max/memory.current, v1 memory.limit_in_bytes/
// memory.usage_in_bytes; inactive file cache counts as free), MemTotal/MemAvailable
// from meminfo and PSI `some avg10` from pressure/memory.
//
// DramAutoPolicy turns signals into a budget (rules in docs/operations.md):
//   ceiling = min(max, resident + cgroup headroom - margin, resident + MemAvailable - reserve)
//   above the ceiling: shrink to it at once; PSI some avg10 >= psi_shrink: shrink by 1/8
//   (at most once per pressure_cooldown); PSI between psi_calm and psi_shrink: hold;
//   calm: grow towards the ceiling by max(budget/16, 16 MiB) per step. The first step
//   jumps straight to the ceiling. Always within [min, max], a multiple of the block.
//
// DramAutoController owns the thread "emp-dram-auto" that applies the policy every
// interval through a BudgetTarget (the Engine in production). A manual resize switches
// it off (set_enabled(false, ...)); set_enabled() waits for a step in progress, so no
// stale automatic budget lands after it returns. start() throws std::system_error when
// the thread cannot be created; everything else is noexcept and thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "common/unique_fd.h"

namespace emp::core {
class Engine;
}

namespace emp::control {

struct MemorySignals {
  std::optional<uint64_t> cgroup_limit;  // tightest memory limit on the cgroup path
  uint64_t cgroup_headroom = 0;          // min over limited levels of limit - (usage - inactive file)
  std::string cgroup_dir;                // the level whose limit is the tightest (messages)
  std::optional<uint64_t> mem_total;     // bytes
  std::optional<uint64_t> mem_available; // bytes
  std::optional<double> psi_some_avg10;  // percent
};

// Never throws; missing or unreadable files leave the matching field empty.
MemorySignals read_memory_signals(const std::string& proc_root, const std::string& cgroup_root) noexcept;

struct DramAutoConfig {
  std::string proc_root = "/proc";
  std::string cgroup_root = "/sys/fs/cgroup";
  std::chrono::milliseconds interval{300};
  uint64_t min_bytes = 0;  // 0: four blocks
  uint64_t max_bytes = 0;  // 0: min(MemTotal, pool capacity)
  double psi_shrink = 10.0;  // PSI some avg10 (%) at or above which the budget shrinks
  double psi_calm = 2.0;     // below this (or without PSI) the budget may grow
  std::chrono::milliseconds pressure_cooldown{2000};
  bool start_thread = true;  // tests drive step() themselves
};

struct DramAutoDecision {
  uint64_t budget = 0;   // the budget to apply
  uint64_t ceiling = 0;  // what cgroup and host allow right now
  std::string reason;    // one phrase: "cgroup limit", "memory pressure", "growing", ...
};

// The decision rules, pure apart from the time of the last pressure shrink.
class DramAutoPolicy {
 public:
  DramAutoPolicy(const DramAutoConfig& config, uint64_t block_size, uint64_t pool_capacity) noexcept;

  uint64_t min_budget() const noexcept { return min_; }
  // The upper bound given these signals (configured max, else MemTotal and the pool).
  uint64_t max_budget(const MemorySignals& signals) const noexcept;
  // cgroup margin: limit/16 clamped to [16 MiB, 256 MiB]. Host reserve: MemTotal/20
  // clamped to [64 MiB, 1 GiB].
  static uint64_t cgroup_margin(uint64_t limit) noexcept;
  static uint64_t host_reserve(uint64_t mem_total) noexcept;

  DramAutoDecision decide(const MemorySignals& signals, uint64_t current_budget, uint64_t resident, bool first,
                          std::chrono::steady_clock::time_point now) noexcept;

 private:
  uint64_t round(uint64_t bytes) const noexcept;

  DramAutoConfig config_;
  uint64_t block_;
  uint64_t pool_capacity_;
  uint64_t min_;
  std::optional<std::chrono::steady_clock::time_point> last_pressure_shrink_;
};

// What the controller steers. Engine in production; tests pass lambdas.
struct BudgetTarget {
  std::function<uint64_t()> budget;
  std::function<uint64_t()> resident;
  std::function<void(uint64_t)> set_budget;
  uint64_t block_size = 64 << 10;
  uint64_t pool_capacity = 0;
};

struct DramAutoState {
  bool enabled = true;
  std::string note;  // why it is off, or the last decision's reason
  uint64_t steps = 0;
  uint64_t last_budget = 0;
  uint64_t ceiling = 0;
  MemorySignals signals;
};

class DramAutoController {
 public:
  static std::unique_ptr<DramAutoController> start(core::Engine& engine, DramAutoConfig config = {});
  static std::unique_ptr<DramAutoController> start(BudgetTarget target, DramAutoConfig config = {});
  // The budget to create an Engine with before the controller runs (the first step's
  // ceiling for these signals).
  static uint64_t initial_budget(const DramAutoConfig& config, uint64_t block_size, uint64_t pool_capacity) noexcept;
  ~DramAutoController();
  DramAutoController(const DramAutoController&) = delete;
  DramAutoController& operator=(const DramAutoController&) = delete;

  // One evaluation now: reads the signals, decides, applies (when enabled and the change
  // is at least one block). Returns the decision.
  DramAutoDecision step() noexcept;
  bool enabled() const noexcept;
  // Off: the budget is left alone until switched on again; `why` is shown by `emp stats`.
  void set_enabled(bool on, const char* why) noexcept;
  // Switches the controller off and sets `bytes` under the same lock (manual resize).
  void override_budget(uint64_t bytes, const char* why) noexcept;
  DramAutoState state() const;
  // {"enabled":..,"note":..,"steps":..,"ceiling_bytes":..,"cgroup_limit_bytes":..,...}
  std::string state_json() const;

 private:
  DramAutoController(BudgetTarget target, DramAutoConfig config);
  void run() noexcept;

  BudgetTarget target_;
  DramAutoConfig config_;
  mutable std::mutex mutex_;  // leaf: guards policy_, state_ and every set_budget call
  DramAutoPolicy policy_;
  DramAutoState state_;
  UniqueFd stop_fd_;
  std::thread thread_;
};

}  // namespace emp::control
