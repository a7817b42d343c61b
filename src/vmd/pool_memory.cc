#include "vmd/pool_memory.h"

#include <sys/mman.h>
#include <sys/resource.h>

#include <cerrno>
#include <cstring>
#include <system_error>

#include "common/log.h"

namespace emp::vmd {

PoolMemory::PoolMemory(uint64_t bytes) : size_(bytes) {
  void* base = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (base == MAP_FAILED)
    throw std::system_error(errno, std::generic_category(), "cannot allocate the " + std::to_string(bytes >> 20) + " MiB pool");
  base_ = static_cast<std::byte*>(base);
  ::madvise(base, bytes, MADV_DONTFORK);
  if (::mlock(base, bytes) == 0) {
    locked_ = true;
  } else {
    int err = errno;
    rlimit limit{};
    ::getrlimit(RLIMIT_MEMLOCK, &limit);
    EMP_WARN("vmd",
             "cannot lock the %llu MiB pool in memory (%s; RLIMIT_MEMLOCK is %llu KiB): it may be swapped out. "
             "Raise the limit (ulimit -l, LimitMEMLOCK=) or run as root",
             static_cast<unsigned long long>(bytes >> 20), std::strerror(err),
             static_cast<unsigned long long>(limit.rlim_cur == RLIM_INFINITY ? ~0ULL : limit.rlim_cur >> 10));
    ::madvise(base, bytes, MADV_POPULATE_WRITE);
  }
}

void PoolMemory::lend(uint64_t offset, uint64_t bytes) noexcept {
  std::byte* at = base_ + offset;
  if (locked_) ::munlock(at, bytes);
  ::madvise(at, bytes, MADV_DONTNEED);
}

void PoolMemory::take_back(uint64_t offset, uint64_t bytes) noexcept {
  std::byte* at = base_ + offset;
  if (locked_) {
    (void)::mlock(at, bytes);  // populates too
  } else {
    ::madvise(at, bytes, MADV_POPULATE_WRITE);
  }
}

PoolMemory::~PoolMemory() {
  if (base_) ::munmap(base_, size_);
}

ExtentAllocator::ExtentAllocator(uint64_t bytes) {
  uint64_t usable = bytes / kLeaseGranule * kLeaseGranule;
  if (usable) free_[0] = usable;
  free_bytes_ = usable;
}

std::optional<uint64_t> ExtentAllocator::allocate(uint64_t bytes) {
  bytes = round(bytes);
  if (bytes == 0) return std::nullopt;
  for (auto it = free_.begin(); it != free_.end(); ++it) {
    if (it->second < bytes) continue;
    uint64_t offset = it->first, length = it->second;
    free_.erase(it);
    if (length > bytes) free_[offset + bytes] = length - bytes;
    free_bytes_ -= bytes;
    return offset;
  }
  return std::nullopt;
}

void ExtentAllocator::release(uint64_t offset, uint64_t bytes) {
  bytes = round(bytes);
  auto [it, inserted] = free_.emplace(offset, bytes);
  if (!inserted) return;  // double release: ignore
  free_bytes_ += bytes;
  auto next = std::next(it);
  if (next != free_.end() && it->first + it->second == next->first) {
    it->second += next->second;
    free_.erase(next);
  }
  if (it != free_.begin()) {
    auto prev = std::prev(it);
    if (prev->first + prev->second == it->first) {
      prev->second += it->second;
      free_.erase(it);
    }
  }
}

}  // namespace emp::vmd
