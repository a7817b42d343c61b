#include "control/dram_auto.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <system_error>
#include <vector>

#include "common/log.h"
#include "common/size_parse.h"
#include "control/json.h"
#include "core/engine.h"

namespace emp::control {
namespace {

constexpr uint64_t kMiB = 1ULL << 20;
// cgroup v1 reports "no limit" as PAGE_COUNTER_MAX pages (~2^63); anything this big is none.
constexpr uint64_t kUnlimited = 1ULL << 62;

std::optional<std::string> read_small_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  std::string text;
  char buffer[4096];
  for (;;) {
    ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0 || text.size() > (256 << 10)) break;
    text.append(buffer, static_cast<size_t>(n));
  }
  ::close(fd);
  return text;
}

std::optional<uint64_t> read_number_file(const std::string& path) {
  auto text = read_small_file(path);
  if (!text) return std::nullopt;
  std::string_view v(*text);
  while (!v.empty() && (v.back() == '\n' || v.back() == ' ')) v.remove_suffix(1);
  if (v == "max") return kUnlimited;
  return parse_uint(v);
}

// Value of `key` in a "key value" file (memory.stat).
std::optional<uint64_t> stat_value(const std::string& text, std::string_view key) {
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string_view line(text.data() + pos, end - pos);
    if (line.size() > key.size() && line.substr(0, key.size()) == key && line[key.size()] == ' ')
      return parse_uint(line.substr(key.size() + 1));
    pos = end + 1;
  }
  return std::nullopt;
}

bool is_directory(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::string parent_of(const std::string& dir) {
  size_t slash = dir.find_last_of('/');
  return slash == std::string::npos || slash == 0 ? std::string("/") : dir.substr(0, slash);
}

std::string strip_trailing_slash(std::string path) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  return path;
}

struct Hierarchy {
  bool v2;
  std::string base;  // mount point of the hierarchy
  std::string path;  // the process's cgroup within it
};

// Walks from base+path up to base, keeping the tightest headroom of any limited level.
void walk_limits(const Hierarchy& h, MemorySignals& out, bool* have) {
  std::string base = strip_trailing_slash(h.base);
  std::string dir = strip_trailing_slash(base + h.path);
  if (!is_directory(dir)) dir = base;  // cgroup namespace: our cgroup is the mount's root
  const char* limit_file = h.v2 ? "/memory.max" : "/memory.limit_in_bytes";
  const char* usage_file = h.v2 ? "/memory.current" : "/memory.usage_in_bytes";
  const char* inactive_key = h.v2 ? "inactive_file" : "total_inactive_file";
  for (int depth = 0; depth < 64; ++depth) {
    auto limit = read_number_file(dir + limit_file);
    if (limit && *limit < kUnlimited) {
      uint64_t usage = read_number_file(dir + usage_file).value_or(0);
      uint64_t inactive = 0;
      if (auto stat = read_small_file(dir + "/memory.stat")) inactive = stat_value(*stat, inactive_key).value_or(0);
      uint64_t used = usage > inactive ? usage - inactive : 0;
      uint64_t headroom = *limit > used ? *limit - used : 0;
      if (!*have || headroom < out.cgroup_headroom) {
        out.cgroup_headroom = headroom;
        out.cgroup_limit = *limit;
        out.cgroup_dir = dir;
        *have = true;
      }
    }
    if (dir.size() <= base.size()) break;
    dir = parent_of(dir);
  }
}

std::vector<Hierarchy> memory_hierarchies(const std::string& proc_root, const std::string& cgroup_root) {
  std::vector<Hierarchy> found;
  auto text = read_small_file(proc_root + "/self/cgroup");
  if (!text) return found;
  size_t pos = 0;
  while (pos < text->size()) {
    size_t end = text->find('\n', pos);
    if (end == std::string::npos) end = text->size();
    std::string line = text->substr(pos, end - pos);
    pos = end + 1;
    size_t c1 = line.find(':'), c2 = c1 == std::string::npos ? c1 : line.find(':', c1 + 1);
    if (c2 == std::string::npos) continue;
    std::string id = line.substr(0, c1), controllers = line.substr(c1 + 1, c2 - c1 - 1), path = line.substr(c2 + 1);
    if (path.empty() || path[0] != '/') path = "/" + path;
    if (id == "0" && controllers.empty()) {
      // cgroup v2: pure (mounted at the root) or hybrid (mounted at <root>/unified).
      for (const std::string& base : {cgroup_root + "/unified", cgroup_root})
        if (read_small_file(base + "/cgroup.controllers")) {
          found.push_back({true, base, path});
          break;
        }
      continue;
    }
    bool memory = false;
    size_t start = 0;
    while (start <= controllers.size()) {
      size_t comma = controllers.find(',', start);
      if (comma == std::string::npos) comma = controllers.size();
      if (controllers.compare(start, comma - start, "memory") == 0 && comma - start == 6) memory = true;
      start = comma + 1;
    }
    if (!memory) continue;
    for (const std::string& base : {cgroup_root + "/memory", cgroup_root + "/" + controllers})
      if (is_directory(base)) {
        found.push_back({false, base, path});
        break;
      }
  }
  return found;
}

}  // namespace

MemorySignals read_memory_signals(const std::string& proc_root, const std::string& cgroup_root) noexcept {
  MemorySignals signals;
  try {
    bool have = false;
    for (const auto& hierarchy : memory_hierarchies(proc_root, cgroup_root)) walk_limits(hierarchy, signals, &have);
    if (auto meminfo = read_small_file(proc_root + "/meminfo")) {
      auto field = [&](std::string_view key) -> std::optional<uint64_t> {
        size_t at = meminfo->find(std::string(key) + ":");
        if (at == std::string::npos || (at > 0 && (*meminfo)[at - 1] != '\n')) return std::nullopt;
        const char* p = meminfo->c_str() + at + key.size() + 1;
        char* end = nullptr;
        unsigned long long kib = std::strtoull(p, &end, 10);
        if (end == p) return std::nullopt;
        return static_cast<uint64_t>(kib) * 1024;
      };
      signals.mem_total = field("MemTotal");
      signals.mem_available = field("MemAvailable");
    }
    if (auto pressure = read_small_file(proc_root + "/pressure/memory")) {
      if (pressure->rfind("some ", 0) == 0) {
        size_t at = pressure->find("avg10=");
        if (at != std::string::npos) {
          const char* p = pressure->c_str() + at + 6;
          char* end = nullptr;
          double value = std::strtod(p, &end);
          if (end != p && value >= 0) signals.psi_some_avg10 = value;
        }
      }
    }
  } catch (...) {  // allocation failure: decide with what we have
  }
  return signals;
}

// ---- policy --------------------------------------------------------------------------

DramAutoPolicy::DramAutoPolicy(const DramAutoConfig& config, uint64_t block_size, uint64_t pool_capacity) noexcept
    : config_(config), block_(block_size ? block_size : 4096), pool_capacity_(pool_capacity) {
  min_ = std::max<uint64_t>(config.min_bytes, 4 * block_);
  min_ = (min_ + block_ - 1) / block_ * block_;
}

uint64_t DramAutoPolicy::cgroup_margin(uint64_t limit) noexcept {
  return std::clamp<uint64_t>(limit / 16, 16 * kMiB, 256 * kMiB);
}

uint64_t DramAutoPolicy::host_reserve(uint64_t mem_total) noexcept {
  return std::clamp<uint64_t>(mem_total / 20, 64 * kMiB, 1024 * kMiB);
}

uint64_t DramAutoPolicy::round(uint64_t bytes) const noexcept {
  return std::max(bytes / block_ * block_, min_);
}

uint64_t DramAutoPolicy::max_budget(const MemorySignals& signals) const noexcept {
  if (config_.max_bytes) return round(config_.max_bytes);
  uint64_t cap = UINT64_MAX;
  if (signals.mem_total) cap = std::min(cap, *signals.mem_total);
  if (pool_capacity_) cap = std::min(cap, pool_capacity_);
  return cap == UINT64_MAX ? UINT64_MAX : round(cap);
}

DramAutoDecision DramAutoPolicy::decide(const MemorySignals& signals, uint64_t current, uint64_t resident, bool first,
                                        std::chrono::steady_clock::time_point now) noexcept {
  auto minus = [](uint64_t a, uint64_t b) { return a > b ? a - b : 0; };
  uint64_t ceiling = max_budget(signals);
  const char* binding = "maximum";
  if (signals.cgroup_limit) {
    uint64_t cgroup = minus(resident + signals.cgroup_headroom, cgroup_margin(*signals.cgroup_limit));
    if (cgroup < ceiling) ceiling = cgroup, binding = "cgroup limit";
  }
  if (signals.mem_available && signals.mem_total) {
    uint64_t host = minus(resident + *signals.mem_available, host_reserve(*signals.mem_total));
    if (host < ceiling) ceiling = host, binding = "low MemAvailable";
  }
  if (ceiling == UINT64_MAX) ceiling = std::max(current, min_);  // nothing known: hold
  ceiling = round(ceiling);

  DramAutoDecision d;
  d.ceiling = ceiling;
  double psi = signals.psi_some_avg10.value_or(0);
  char psi_text[64];
  std::snprintf(psi_text, sizeof psi_text, "PSI some avg10 %.2f%%", psi);
  try {
    if (first) {
      d.budget = ceiling;
      d.reason = std::string("initial (") + binding + ")";
    } else if (current > ceiling) {
      d.budget = ceiling;
      d.reason = std::string("shrink to the ") + binding;
    } else if (psi >= config_.psi_shrink) {
      if (!last_pressure_shrink_ || now - *last_pressure_shrink_ >= config_.pressure_cooldown) {
        d.budget = round(current - current / 8);
        last_pressure_shrink_ = now;
        d.reason = std::string("memory pressure (") + psi_text + "): shrink by 1/8";
      } else {
        d.budget = round(current);
        d.reason = std::string("memory pressure (") + psi_text + "): holding after a shrink";
      }
    } else if (psi >= config_.psi_calm) {
      d.budget = round(current);
      d.reason = std::string("moderate memory pressure (") + psi_text + "): holding";
    } else {
      uint64_t grown = current + std::max<uint64_t>(current / 16, 16 * kMiB);
      d.budget = round(std::min(grown, ceiling));
      d.reason = d.budget >= ceiling ? std::string("at the ") + binding : std::string("calm: growing");
    }
  } catch (...) {  // reason strings only
    if (!d.budget) d.budget = round(std::min(current, ceiling));
  }
  d.budget = std::min(d.budget, std::max(ceiling, min_));
  return d;
}

// ---- controller ----------------------------------------------------------------------

DramAutoController::DramAutoController(BudgetTarget target, DramAutoConfig config)
    : target_(std::move(target)), config_(std::move(config)), policy_(config_, target_.block_size, target_.pool_capacity) {}

std::unique_ptr<DramAutoController> DramAutoController::start(core::Engine& engine, DramAutoConfig config) {
  BudgetTarget target;
  target.budget = [&engine] { return engine.budget(); };
  target.resident = [&engine] { return engine.resident(); };
  target.set_budget = [&engine](uint64_t bytes) { engine.set_budget(bytes); };
  target.block_size = engine.options().block_size;
  target.pool_capacity = engine.pool().capacity();
  return start(std::move(target), std::move(config));
}

std::unique_ptr<DramAutoController> DramAutoController::start(BudgetTarget target, DramAutoConfig config) {
  std::unique_ptr<DramAutoController> controller(new DramAutoController(std::move(target), std::move(config)));
  if (!controller->config_.start_thread) return controller;
  controller->stop_fd_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!controller->stop_fd_.valid()) throw std::system_error(errno, std::generic_category(), "dram:auto: eventfd");
  controller->thread_ = std::thread([c = controller.get()] { c->run(); });
  return controller;
}

uint64_t DramAutoController::initial_budget(const DramAutoConfig& config, uint64_t block_size,
                                            uint64_t pool_capacity) noexcept {
  DramAutoPolicy policy(config, block_size, pool_capacity);
  MemorySignals signals = read_memory_signals(config.proc_root, config.cgroup_root);
  return policy.decide(signals, 0, 0, true, std::chrono::steady_clock::now()).budget;
}

DramAutoController::~DramAutoController() {
  if (thread_.joinable()) {
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(stop_fd_.get(), &one, sizeof one);
    thread_.join();
  }
}

void DramAutoController::run() noexcept {
  pthread_setname_np(pthread_self(), "emp-dram-auto");
  for (;;) {
    step();
    struct pollfd pfd {stop_fd_.get(), POLLIN, 0};
    int ready = ::poll(&pfd, 1, static_cast<int>(config_.interval.count()));
    if (ready > 0) return;
  }
}

DramAutoDecision DramAutoController::step() noexcept {
  MemorySignals signals = read_memory_signals(config_.proc_root, config_.cgroup_root);
  std::lock_guard lock(mutex_);
  DramAutoDecision decision;
  try {
    uint64_t current = target_.budget();
    bool first = state_.steps == 0;
    decision = policy_.decide(signals, current, target_.resident(), first, std::chrono::steady_clock::now());
    ++state_.steps;
    state_.ceiling = decision.ceiling;
    state_.signals = std::move(signals);
    if (!state_.enabled) return decision;
    state_.note = decision.reason;
    uint64_t change = decision.budget > current ? decision.budget - current : current - decision.budget;
    if (change >= target_.block_size || (first && change)) {
      target_.set_budget(decision.budget);
      state_.last_budget = decision.budget;
      EMP_INFO("dram-auto", "budget %s -> %s: %s", format_size(current).c_str(), format_size(decision.budget).c_str(),
               decision.reason.c_str());
    }
  } catch (...) {  // a callback or a string threw: keep the current budget
  }
  return decision;
}

bool DramAutoController::enabled() const noexcept {
  std::lock_guard lock(mutex_);
  return state_.enabled;
}

void DramAutoController::set_enabled(bool on, const char* why) noexcept {
  std::lock_guard lock(mutex_);
  state_.enabled = on;
  try {
    state_.note = why ? why : "";
  } catch (...) {
  }
}

void DramAutoController::override_budget(uint64_t bytes, const char* why) noexcept {
  std::lock_guard lock(mutex_);
  state_.enabled = false;
  try {
    state_.note = why ? why : "";
    target_.set_budget(bytes);
  } catch (...) {
  }
}

DramAutoState DramAutoController::state() const {
  std::lock_guard lock(mutex_);
  return state_;
}

std::string DramAutoController::state_json() const {
  DramAutoState s = state();
  std::string out = "{\"enabled\":";
  out += s.enabled ? "true" : "false";
  out += ",\"note\":";
  append_json_string(out, s.note);
  auto number = [&out](const char* key, std::optional<uint64_t> value) {
    out += ",\"";
    out += key;
    out += "\":";
    out += value ? std::to_string(*value) : "null";
  };
  number("steps", s.steps);
  number("ceiling_bytes", s.ceiling);
  number("cgroup_limit_bytes", s.signals.cgroup_limit);
  number("cgroup_headroom_bytes", s.signals.cgroup_limit ? std::optional<uint64_t>(s.signals.cgroup_headroom) : std::nullopt);
  out += ",\"cgroup_dir\":";
  append_json_string(out, s.signals.cgroup_dir);
  number("mem_total_bytes", s.signals.mem_total);
  number("mem_available_bytes", s.signals.mem_available);
  out += ",\"psi_some_avg10\":";
  if (s.signals.psi_some_avg10) {
    char text[32];
    std::snprintf(text, sizeof text, "%.2f", *s.signals.psi_some_avg10);
    out += text;
  } else {
    out += "null";
  }
  out += "}";
  return out;
}

}  // namespace emp::control
