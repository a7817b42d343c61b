#include "os/page_drop.h"

#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

#include "os/page.h"
#include "os/raw_syscalls.h"

namespace emp::os {
namespace {

// The calling process itself, for pidfd-taking calls (Linux >= 6.14; older kernels answer EBADF).
constexpr int kPidfdSelf = -10000;

long process_madvise_self(const iovec* ranges, size_t count, int advice) noexcept {
#ifdef SYS_process_madvise
  return ::syscall(SYS_process_madvise, kPidfdSelf, ranges, count, advice, 0u);
#else
  (void)ranges, (void)count, (void)advice;
  errno = ENOSYS;
  return -1;
#endif
}

}  // namespace

const char* to_string(DropMethod method) noexcept {
  switch (method) {
    case DropMethod::kProcessMadvise: return "process_madvise";
    case DropMethod::kMadvisePerRun: return "madvise per run";
  }
  return "?";
}

DropMethod probe_drop_method() noexcept {
  void* page = raw_mmap(nullptr, kPageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (page == MAP_FAILED) return DropMethod::kMadvisePerRun;
  static_cast<volatile char*>(page)[0] = 1;
  iovec range{page, kPageSize};
  long dropped = process_madvise_self(&range, 1, MADV_DONTNEED);
  bool works = dropped == static_cast<long>(kPageSize) && static_cast<volatile char*>(page)[0] == 0;
  raw_munmap(page, kPageSize);
  return works ? DropMethod::kProcessMadvise : DropMethod::kMadvisePerRun;
}

void PageDropBatch::add(uintptr_t start, size_t length) noexcept {
  if (length == 0) return;
  if (runs_ > 0) {
    iovec& last = run_[runs_ - 1];
    if (reinterpret_cast<uintptr_t>(last.iov_base) + last.iov_len == start) {
      last.iov_len += length;
      return;
    }
  }
  if (runs_ == kMaxRuns && flush() != 0 && deferred_errno_ == 0) deferred_errno_ = errno;
  run_[runs_++] = iovec{reinterpret_cast<void*>(start), length};
}

int PageDropBatch::flush() noexcept {
  int first_errno = deferred_errno_;
  deferred_errno_ = 0;
  size_t done = 0;
  if (method_ == DropMethod::kProcessMadvise && advice_ == MADV_DONTNEED) {
    // The kernel may stop early (a range it refuses): finish the rest one run at a time.
    size_t bytes = 0;
    for (size_t i = 0; i < runs_; ++i) bytes += run_[i].iov_len;
    long dropped = process_madvise_self(run_, runs_, advice_);
    ++calls_;
    if (dropped == static_cast<long>(bytes)) done = runs_;
    else if (dropped > 0)
      for (size_t moved = 0; done < runs_ && moved + run_[done].iov_len <= static_cast<size_t>(dropped); ++done)
        moved += run_[done].iov_len;
  }
  calls_ += runs_ - done;
  for (size_t i = done; i < runs_; ++i)
    if (raw_madvise(run_[i].iov_base, run_[i].iov_len, advice_) != 0 && first_errno == 0) first_errno = errno;
  runs_ = 0;
  if (first_errno == 0) return 0;
  errno = first_errno;
  return -1;
}

}  // namespace emp::os
