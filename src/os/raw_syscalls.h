// Raw memory syscalls that bypass libc, so they are never caught by EMP's own
// interposition of mmap/munmap/madvise in libemp.so. Thread-safe, noexcept; they
// return the kernel's result and set errno like libc does.
#pragma once

#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstddef>

namespace emp::os {

inline void* raw_mmap(void* addr, size_t length, int prot, int flags, int fd, off_t offset) noexcept {
  long result = ::syscall(SYS_mmap, addr, length, prot, flags, fd, offset);
  return result == -1 ? MAP_FAILED : reinterpret_cast<void*>(result);
}
inline int raw_munmap(void* addr, size_t length) noexcept {
  return static_cast<int>(::syscall(SYS_munmap, addr, length));
}
inline int raw_madvise(void* addr, size_t length, int advice) noexcept {
  return static_cast<int>(::syscall(SYS_madvise, addr, length, advice));
}
inline int raw_mprotect(void* addr, size_t length, int prot) noexcept {
  return static_cast<int>(::syscall(SYS_mprotect, addr, length, prot));
}

}  // namespace emp::os
