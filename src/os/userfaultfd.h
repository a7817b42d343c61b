// Userfaultfd: one userfaultfd descriptor with its probed features, and the ioctls the
// engine uses (register, copy, zeropage, write-protect, wake, move).
//
// open() probes what the kernel offers (WP, MINOR, MOVE, WP_ASYNC, EVENT_*), picks the
// best way to create the descriptor (syscall; /dev/userfaultfd; user-mode-only as a last
// resort) and throws a message naming the missing permission when none is allowed.
// All other calls are noexcept and thread-safe (the kernel serialises them); EEXIST and
// EAGAIN from the copy ioctls are expected outcomes, returned as CopyOutcome, not errors.
#pragma once

#include <linux/userfaultfd.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "common/status.h"
#include "common/unique_fd.h"

// Features newer than the Debian 12 (6.1) headers; probed at run time.
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif
#ifndef UFFD_FEATURE_POISON
#define UFFD_FEATURE_POISON (1 << 14)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif
#ifndef UFFD_FEATURE_MOVE
#define UFFD_FEATURE_MOVE (1 << 16)
#endif

namespace emp::os {

struct UffdFeatures {
  uint64_t raw = 0;  // what the kernel offers
  bool write_protect = false;
  bool missing_shmem = false;  // MISSING faults on shared memory (memfd, shmem)
  bool wp_shmem = false;       // write-protect on shared memory
  bool minor_shmem = false;
  bool move = false;
  bool wp_async = false;
  bool wp_unpopulated = false;
  bool thread_id = false;
  bool event_fork = false;
  bool event_remap = false;
  bool event_remove = false;
  bool event_unmap = false;

  static UffdFeatures from_raw(uint64_t raw) noexcept;
  std::string describe() const;  // "WP MINOR_SHMEM MOVE ..."
};

struct UffdOpenOptions {
  bool need_kernel_faults = true;   // faults taken inside syscalls must reach us
  uint64_t events = 0;              // UFFD_FEATURE_EVENT_* to enable
  bool disable_write_protect = false;  // for testing the fallback path
};

enum class CopyOutcome { kDone, kExists, kRetry };

class Userfaultfd {
 public:
  // Throws std::system_error with a message naming the missing permission.
  static Userfaultfd open(const UffdOpenOptions& options = {});

  int fd() const noexcept { return fd_.get(); }
  const UffdFeatures& features() const noexcept { return features_; }
  bool write_protect_enabled() const noexcept { return wp_enabled_; }
  // Shared memory (a MAP_SHARED memfd or shmem mapping) can be registered: MISSING
  // faults, and write-protect too when that is in use.
  bool shared_memory_enabled() const noexcept {
    return features_.missing_shmem && (!wp_enabled_ || features_.wp_shmem);
  }
  bool user_mode_only() const noexcept { return user_mode_only_; }
  const char* open_method() const noexcept { return method_; }

  Status register_range(void* addr, size_t length) noexcept;  // MISSING (+WP when enabled)
  Status unregister_range(void* addr, size_t length) noexcept;

  // Fault path. `copied` receives how many bytes were installed (partial on kRetry).
  CopyOutcome copy(void* dst, const void* src, size_t length, bool write_protect, bool wake,
                   Status* error, size_t* copied = nullptr) noexcept;
  CopyOutcome zeropage(void* dst, size_t length, bool wake, Status* error) noexcept;
  Status write_protect(void* addr, size_t length, bool protect, bool wake) noexcept;
  Status wake(void* addr, size_t length) noexcept;

 private:
  Userfaultfd(UniqueFd fd, UffdFeatures features, bool wp, bool user_mode_only, const char* method)
      : fd_(std::move(fd)), features_(features), wp_enabled_(wp), user_mode_only_(user_mode_only), method_(method) {}
  UniqueFd fd_;
  UffdFeatures features_;
  bool wp_enabled_ = false;
  bool user_mode_only_ = false;
  const char* method_ = "";
};

// Text for the error when userfaultfd is not permitted: which of the three ways in is
// missing here (sysctl, /dev/userfaultfd, CAP_SYS_PTRACE).
std::string userfaultfd_permission_help();

}  // namespace emp::os
