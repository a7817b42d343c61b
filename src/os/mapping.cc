#include "os/mapping.h"

#include "os/raw_syscalls.h"

#include <time.h>

namespace emp::os {
namespace {

// Under ThreadSanitizer these go through libc, whose interceptors tell TSan that a reused
// address holds new memory; raw syscalls would leave stale shadow state behind, and a
// block table mapped where an old one was would be reported as a race.
#if defined(__SANITIZE_THREAD__)
void* map_memory(void* hint, size_t length, int flags) noexcept {
  return ::mmap(hint, length, PROT_READ | PROT_WRITE, flags, -1, 0);
}
void unmap_memory(void* base, size_t length) noexcept { ::munmap(base, length); }
#else
void* map_memory(void* hint, size_t length, int flags) noexcept {
  return raw_mmap(hint, length, PROT_READ | PROT_WRITE, flags, -1, 0);
}
void unmap_memory(void* base, size_t length) noexcept { raw_munmap(base, length); }
#endif

// EMP's own mappings (block tables, allocator books, staging, the heap arena) go to a
// zone of the address space programs do not use: the kernel would otherwise put them in
// the first hole below the mmap base — often a range the program has just unmapped and
// is about to map again with MAP_FIXED at the same address (stress-ng's mmap stressor
// does exactly that), which would silently replace EMP's memory with the program's. The
// hint is only a hint: where it is taken the kernel places the mapping as usual. It is
// drawn from the clock, so no state is kept. ThreadSanitizer wants its own placement.
constexpr uintptr_t kZoneStart = 0x300000000000;  // 48 TiB
constexpr uintptr_t kZoneBytes = 0x100000000000;  // 16 TiB
void* zone_hint(size_t length, size_t alignment) noexcept {
#if defined(__SANITIZE_THREAD__)
  (void)length;
  (void)alignment;
  return nullptr;
#else
  if (length > kZoneBytes / 4 || alignment > kZoneBytes / 4) return nullptr;  // let the kernel place it
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  uint64_t x = static_cast<uint64_t>(now.tv_nsec) ^ (static_cast<uint64_t>(now.tv_sec) << 30) ^ (length * 0x9e3779b97f4a7c15ULL);
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  uintptr_t offset = (x % (kZoneBytes - length - alignment)) & ~(static_cast<uintptr_t>(alignment) - 1);
  return reinterpret_cast<void*>(kZoneStart + offset);
#endif
}

}  // namespace

Result<Mapping> Mapping::anonymous(size_t length, size_t alignment, bool populate) noexcept {
  if (length == 0) return Status::error(EINVAL, "mapping of zero bytes");
  if (alignment < 4096) alignment = 4096;
  size_t padded = length + alignment - 4096;
  int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
  void* raw = map_memory(zone_hint(padded, alignment), padded, flags);
  if (raw == MAP_FAILED) return Status::from_errno("mmap");
  uintptr_t start = reinterpret_cast<uintptr_t>(raw);
  uintptr_t aligned = (start + alignment - 1) & ~(static_cast<uintptr_t>(alignment) - 1);
  if (aligned > start) unmap_memory(raw, aligned - start);
  uintptr_t end = aligned + length, padded_end = start + padded;
  if (padded_end > end) unmap_memory(reinterpret_cast<void*>(end), padded_end - end);
  void* base = reinterpret_cast<void*>(aligned);
  if (populate) raw_madvise(base, length, MADV_POPULATE_WRITE);
  return Mapping(base, length);
}

Mapping& Mapping::operator=(Mapping&& other) noexcept {
  if (this != &other) {
    reset();
    base_ = std::exchange(other.base_, nullptr);
    length_ = std::exchange(other.length_, 0);
  }
  return *this;
}

void Mapping::unmap(void* base, size_t length) noexcept { unmap_memory(base, length); }

void Mapping::reset() noexcept {
  if (base_) unmap_memory(base_, length_);
  base_ = nullptr;
  length_ = 0;
}

}  // namespace emp::os
