// Copying out of application memory that the kernel keeps frozen for us.
//
// The evictor reads a dirty block right after write-protecting it (UFFDIO_WRITEPROTECT):
// the TLB shootdown orders every earlier application write before the copy, and later
// writes fault and wait. ThreadSanitizer cannot see that ordering, so under TSan the copy
// is excluded from race detection (the application's own accesses are still checked
// against each other). Under AddressSanitizer the copy is not checked either: the bytes
// are the application's, and where the application runs ASan-instrumented code on a
// stack in managed memory (an alternate signal stack) its frames' redzones are poisoned,
// which says nothing about EMP reading them. Thread-safe, noexcept.
#pragma once

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#if defined(__SANITIZE_THREAD__)
extern "C" void __tsan_ignore_thread_begin();
extern "C" void __tsan_ignore_thread_end();
#endif

namespace emp::os {

#if defined(__SANITIZE_ADDRESS__)
// Word by word, uninstrumented (memcpy would go through ASan's checking interceptor).
__attribute__((no_sanitize("address"))) inline void copy_unchecked(void* destination, const void* source,
                                                                   size_t length) noexcept {
  auto* to = static_cast<volatile uint64_t*>(destination);
  const auto* from = static_cast<const volatile uint64_t*>(source);
  for (size_t i = 0; i < length / sizeof(uint64_t); ++i) to[i] = from[i];
  auto* to_bytes = static_cast<volatile unsigned char*>(destination);
  const auto* from_bytes = static_cast<const volatile unsigned char*>(source);
  for (size_t i = length & ~(sizeof(uint64_t) - 1); i < length; ++i) to_bytes[i] = from_bytes[i];
}
#endif

inline void copy_from_frozen_app_memory(void* destination, const void* source, size_t length) noexcept {
#if defined(__SANITIZE_THREAD__)
  __tsan_ignore_thread_begin();
  std::memcpy(destination, source, length);
  __tsan_ignore_thread_end();
#elif defined(__SANITIZE_ADDRESS__)
  copy_unchecked(destination, source, length);
#else
  std::memcpy(destination, source, length);
#endif
}

// The same copy through /proc/self/mem (`memory_fd`), which reads pages the application
// has made unreadable with mprotect. Returns false when the read fails.
inline bool copy_from_frozen_app_memory_forced(int memory_fd, void* destination, const void* source,
                                               size_t length) noexcept {
  size_t done = 0;
  while (done < length) {
    ssize_t n = ::pread(memory_fd, static_cast<char*>(destination) + done, length - done,
                        static_cast<off_t>(reinterpret_cast<uintptr_t>(source) + done));
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

}  // namespace emp::os
