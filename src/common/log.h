// Logging: printf-style, formatted into a stack buffer and written with one write(2)
// to stderr, so it is safe in fault handlers and inside the preload library (no heap,
// no iostreams). The level is process-wide (set once from EMP_LOG_LEVEL at start-up);
// it is the one piece of mutable global state outside the preload entry point, and
// it is an atomic.
#pragma once

#include <atomic>
#include <string_view>

namespace emp::log {

enum class Level : int { kError = 0, kWarn = 1, kInfo = 2, kDebug = 3 };

void set_level(Level level) noexcept;
Level level() noexcept;
bool parse_level(std::string_view text, Level* out) noexcept;
bool enabled(Level level) noexcept;
void write(Level level, const char* subsystem, const char* format, ...) noexcept
    __attribute__((format(printf, 3, 4)));

// Per-call-site limiter: at most kBurst messages per second, then a count of what was
// suppressed. Lock-free; lives in a function-local static at each call site.
class RateLimit {
 public:
  static constexpr uint64_t kBurst = 5;
  // True if this message may be written; *suppressed receives how many were dropped
  // since the last one written.
  bool allow(uint64_t* suppressed) noexcept;

 private:
  std::atomic<uint64_t> window_start_ns_{0};
  std::atomic<uint64_t> in_window_{0};
  std::atomic<uint64_t> suppressed_{0};
};

}  // namespace emp::log

#define EMP_LOG(lvl, subsystem, ...)                                   \
  do {                                                                 \
    if (::emp::log::enabled(lvl)) ::emp::log::write(lvl, subsystem, __VA_ARGS__); \
  } while (0)
// Rate-limited variants for messages that can repeat on every fault or I/O.
#define EMP_LOG_LIMITED(lvl, subsystem, ...)                                          \
  do {                                                                                \
    static ::emp::log::RateLimit emp_rate_limit_;                                     \
    uint64_t emp_suppressed_ = 0;                                                     \
    if (::emp::log::enabled(lvl) && emp_rate_limit_.allow(&emp_suppressed_)) {        \
      if (emp_suppressed_)                                                            \
        ::emp::log::write(lvl, subsystem, "(%llu similar messages suppressed)",       \
                          static_cast<unsigned long long>(emp_suppressed_));          \
      ::emp::log::write(lvl, subsystem, __VA_ARGS__);                                 \
    }                                                                                 \
  } while (0)
#define EMP_ERROR_LIMITED(sub, ...) EMP_LOG_LIMITED(::emp::log::Level::kError, sub, __VA_ARGS__)
#define EMP_ERROR(sub, ...) EMP_LOG(::emp::log::Level::kError, sub, __VA_ARGS__)
#define EMP_WARN(sub, ...) EMP_LOG(::emp::log::Level::kWarn, sub, __VA_ARGS__)
#define EMP_INFO(sub, ...) EMP_LOG(::emp::log::Level::kInfo, sub, __VA_ARGS__)
#define EMP_DEBUG(sub, ...) EMP_LOG(::emp::log::Level::kDebug, sub, __VA_ARGS__)
