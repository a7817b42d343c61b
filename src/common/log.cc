#include "common/log.h"

#include <unistd.h>

#include <time.h>

#include <cstdarg>
#include <cstdio>

namespace emp::log {
namespace {
std::atomic<int> g_level{static_cast<int>(Level::kWarn)};
const char* level_name(Level level) {
  switch (level) {
    case Level::kError: return "error";
    case Level::kWarn: return "warning";
    case Level::kInfo: return "info";
    case Level::kDebug: return "debug";
  }
  return "?";
}
}  // namespace

void set_level(Level level) noexcept { g_level.store(static_cast<int>(level)); }
Level level() noexcept { return static_cast<Level>(g_level.load(std::memory_order_relaxed)); }
bool enabled(Level lvl) noexcept {
  return static_cast<int>(lvl) <= g_level.load(std::memory_order_relaxed);
}

bool parse_level(std::string_view text, Level* out) noexcept {
  static constexpr std::pair<std::string_view, Level> kNames[] = {
      {"error", Level::kError}, {"warn", Level::kWarn}, {"warning", Level::kWarn},
      {"info", Level::kInfo},   {"debug", Level::kDebug}, {"0", Level::kError},
      {"1", Level::kWarn},      {"2", Level::kInfo},      {"3", Level::kDebug}};
  for (const auto& [name, lvl] : kNames) {
    if (text == name) {
      *out = lvl;
      return true;
    }
  }
  return false;
}

bool RateLimit::allow(uint64_t* suppressed) noexcept {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  uint64_t now = static_cast<uint64_t>(ts.tv_sec) * 1000000000ULL + static_cast<uint64_t>(ts.tv_nsec);
  uint64_t start = window_start_ns_.load(std::memory_order_relaxed);
  if (now - start >= 1000000000ULL && window_start_ns_.compare_exchange_strong(start, now)) in_window_.store(0);
  if (in_window_.fetch_add(1, std::memory_order_relaxed) < kBurst) {
    *suppressed = suppressed_.exchange(0, std::memory_order_relaxed);
    return true;
  }
  suppressed_.fetch_add(1, std::memory_order_relaxed);
  return false;
}

void write(Level lvl, const char* subsystem, const char* format, ...) noexcept {
  char buffer[1024];
  int used = std::snprintf(buffer, sizeof buffer, "emp[%d] %s: %s: ", static_cast<int>(getpid()),
                           subsystem, level_name(lvl));
  if (used < 0) return;
  va_list args;
  va_start(args, format);
  int more = std::vsnprintf(buffer + used, sizeof buffer - static_cast<size_t>(used) - 1, format, args);
  va_end(args);
  if (more < 0) return;
  size_t length = static_cast<size_t>(used) + static_cast<size_t>(more);
  if (length > sizeof buffer - 2) length = sizeof buffer - 2;
  buffer[length++] = '\n';
  ssize_t ignored = ::write(STDERR_FILENO, buffer, length);
  (void)ignored;
}

}  // namespace emp::log
