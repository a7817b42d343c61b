// PageDropBatch: gives many ranges of anonymous memory back to the kernel with as few
// TLB shootdowns as the kernel allows. Every MADV_DONTNEED call ends in a TLB flush that
// interrupts each other CPU running a thread of the process (about 10 µs per call on the
// measured VMs, docs/performance.md); one process_madvise(PIDFD_SELF, ranges,
// MADV_DONTNEED) flushes once for the whole batch. The method is probed once
// (probe_drop_method: Linux >= 6.14 with PIDFD_SELF); the fallback coalesces adjacent
// ranges and makes one madvise per run.
//
// A batch is a small value owned by one thread (no locks); the probe result is plain
// data passed in by the owner (the engine).
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>

namespace emp::os {

enum class DropMethod {
  kProcessMadvise,  // one process_madvise(PIDFD_SELF, ...) per batch: one TLB flush
  kMadvisePerRun,   // one madvise per run of adjacent ranges
};
const char* to_string(DropMethod method) noexcept;

// Which method this kernel supports for MADV_DONTNEED on private anonymous memory.
DropMethod probe_drop_method() noexcept;

class PageDropBatch {
 public:
  static constexpr size_t kMaxRuns = 512;  // below the kernel's UIO_MAXIOV (1024)
  // `advice` is MADV_DONTNEED, or MADV_REMOVE for shared memory (always one call per run:
  // process_madvise does not take MADV_REMOVE).
  PageDropBatch(DropMethod method, int advice) noexcept : method_(method), advice_(advice) {}
  // Adds [start, start + length); joins the previous run when adjacent. Flushes first
  // when the batch is full.
  void add(uintptr_t start, size_t length) noexcept;
  // Drops every run added since the last flush. Returns 0, or -1 with errno of the first
  // failure (the other runs are still dropped).
  int flush() noexcept;
  bool empty() const noexcept { return runs_ == 0; }
  // System calls made so far (each one TLB shootdown).
  size_t calls() const noexcept { return calls_; }

 private:
  DropMethod method_;
  int advice_;
  size_t runs_ = 0;
  size_t calls_ = 0;
  int deferred_errno_ = 0;
  iovec run_[kMaxRuns];
};

}  // namespace emp::os
