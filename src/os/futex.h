// Futex wait/wake on a 32-bit atomic word, with a timeout (std::atomic::wait has none).
// Used where a thread sleeps until another one signals it (the evictor's kick): the
// signalling side is one atomic exchange and, only when the word changes, one
// FUTEX_WAKE — no mutex. Thread-safe, noexcept.
#pragma once

#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>

namespace emp::os {

// Sleeps while `word` holds `expected`, at most `timeout_ns`; returns at once otherwise.
// Spurious returns are possible: callers re-check their condition.
inline void futex_wait(std::atomic<uint32_t>& word, uint32_t expected, uint64_t timeout_ns) noexcept {
  timespec timeout{static_cast<time_t>(timeout_ns / 1000000000ULL), static_cast<long>(timeout_ns % 1000000000ULL)};
  ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word), FUTEX_WAIT_PRIVATE, expected, &timeout, nullptr, 0);
}

inline void futex_wake_all(std::atomic<uint32_t>& word) noexcept {
  ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word), FUTEX_WAKE_PRIVATE, INT32_MAX, nullptr, nullptr, 0);
}

}  // namespace emp::os
