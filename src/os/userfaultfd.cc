#include "os/userfaultfd.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <fstream>
#include <system_error>

#include "common/log.h"

namespace emp::os {
namespace {

int create_via_syscall(int flags) { return static_cast<int>(::syscall(SYS_userfaultfd, flags)); }

int create_via_device(int flags) {
  int dev = ::open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
  if (dev < 0) return -1;
  int fd = ::ioctl(dev, USERFAULTFD_IOC_NEW, flags);
  int saved = errno;
  ::close(dev);
  errno = saved;
  return fd;
}

// Each descriptor accepts UFFDIO_API once; probe on a throwaway one.
bool api_handshake(int fd, uint64_t wanted, uint64_t* offered) {
  uffdio_api api{};
  api.api = UFFD_API;
  api.features = wanted;
  if (::ioctl(fd, UFFDIO_API, &api) != 0) return false;
  if (offered) *offered = api.features;
  return true;
}

bool has_cap_sys_ptrace() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("CapEff:", 0) == 0) {
      unsigned long long caps = std::stoull(line.substr(7), nullptr, 16);
      return (caps >> 19) & 1;  // CAP_SYS_PTRACE
    }
  }
  return false;
}

}  // namespace

UffdFeatures UffdFeatures::from_raw(uint64_t raw) noexcept {
  UffdFeatures f;
  f.raw = raw;
  f.write_protect = raw & UFFD_FEATURE_PAGEFAULT_FLAG_WP;
  f.missing_shmem = raw & UFFD_FEATURE_MISSING_SHMEM;
  f.wp_shmem = raw & UFFD_FEATURE_WP_HUGETLBFS_SHMEM;
  f.minor_shmem = raw & UFFD_FEATURE_MINOR_SHMEM;
  f.move = raw & UFFD_FEATURE_MOVE;
  f.wp_async = raw & UFFD_FEATURE_WP_ASYNC;
  f.wp_unpopulated = raw & UFFD_FEATURE_WP_UNPOPULATED;
  f.thread_id = raw & UFFD_FEATURE_THREAD_ID;
  f.event_fork = raw & UFFD_FEATURE_EVENT_FORK;
  f.event_remap = raw & UFFD_FEATURE_EVENT_REMAP;
  f.event_remove = raw & UFFD_FEATURE_EVENT_REMOVE;
  f.event_unmap = raw & UFFD_FEATURE_EVENT_UNMAP;
  return f;
}

std::string UffdFeatures::describe() const {
  std::string text;
  auto add = [&](bool on, const char* name) {
    if (!on) return;
    if (!text.empty()) text += ' ';
    text += name;
  };
  add(write_protect, "WP");
  add(missing_shmem, "MISSING_SHMEM");
  add(wp_shmem, "WP_SHMEM");
  add(minor_shmem, "MINOR_SHMEM");
  add(move, "MOVE");
  add(wp_async, "WP_ASYNC");
  add(wp_unpopulated, "WP_UNPOPULATED");
  add(thread_id, "THREAD_ID");
  add(event_fork, "EVENT_FORK");
  add(event_remap, "EVENT_REMAP");
  add(event_remove, "EVENT_REMOVE");
  add(event_unmap, "EVENT_UNMAP");
  return text.empty() ? "none" : text;
}

std::string userfaultfd_permission_help() {
  std::string sysctl = "?";
  if (std::ifstream f("/proc/sys/vm/unprivileged_userfaultfd"); f) std::getline(f, sysctl);
  bool dev_ok = ::access("/dev/userfaultfd", R_OK | W_OK) == 0;
  std::string text = "userfaultfd is not permitted for this process; EMP needs one of: ";
  text += "vm.unprivileged_userfaultfd=1 (now " + sysctl + "; sysctl -w vm.unprivileged_userfaultfd=1), ";
  text += std::string("read/write access to /dev/userfaultfd (") + (dev_ok ? "present" : "missing") + "), ";
  text += std::string("or CAP_SYS_PTRACE (") + (has_cap_sys_ptrace() ? "present" : "missing") + ")";
  text += "; in a container also allow the userfaultfd syscall in its seccomp profile";
  return text;
}

Userfaultfd Userfaultfd::open(const UffdOpenOptions& options) {
  const int base_flags = O_CLOEXEC | O_NONBLOCK;
  struct Attempt {
    const char* method;
    int (*create)(int);
    int extra_flags;
  };
  const Attempt attempts[] = {
      {"syscall", create_via_syscall, 0},
      {"/dev/userfaultfd", create_via_device, 0},
      {"syscall (user-mode faults only)", create_via_syscall, UFFD_USER_MODE_ONLY},
  };
  int last_errno = EPERM;
  for (const Attempt& attempt : attempts) {
    if (attempt.extra_flags && options.need_kernel_faults) continue;
    int flags = base_flags | attempt.extra_flags;
    UniqueFd probe(attempt.create(flags));
    if (!probe.valid()) {
      last_errno = errno;
      if (errno == ENOSYS) break;
      continue;
    }
    uint64_t offered = 0;
    if (!api_handshake(probe.get(), 0, &offered))
      throw std::system_error(errno, std::generic_category(), "userfaultfd UFFDIO_API probe");
    UffdFeatures features = UffdFeatures::from_raw(offered);
    bool wp = features.write_protect && !options.disable_write_protect;
    uint64_t wanted = (options.events & offered);
    if (wp) wanted |= UFFD_FEATURE_PAGEFAULT_FLAG_WP;
    if (features.thread_id) wanted |= UFFD_FEATURE_THREAD_ID;
    if (features.missing_shmem) wanted |= UFFD_FEATURE_MISSING_SHMEM;
    if (wp && features.wp_shmem) wanted |= UFFD_FEATURE_WP_HUGETLBFS_SHMEM;
    UniqueFd fd(attempt.create(flags));
    if (!fd.valid() || !api_handshake(fd.get(), wanted, nullptr))
      throw std::system_error(errno, std::generic_category(), "userfaultfd UFFDIO_API");
    EMP_INFO("uffd", "userfaultfd via %s; kernel offers: %s; using %s", attempt.method,
             features.describe().c_str(), wp ? "write-protect dirty tracking" : "no write-protect (all resident blocks treated as dirty)");
    return Userfaultfd(std::move(fd), features, wp, attempt.extra_flags != 0, attempt.method);
  }
  if (last_errno == ENOSYS)
    throw std::system_error(ENOSYS, std::generic_category(),
                            "userfaultfd is not available (kernel built without CONFIG_USERFAULTFD, or blocked by seccomp)");
  throw std::system_error(last_errno, std::generic_category(), userfaultfd_permission_help());
}

Status Userfaultfd::register_range(void* addr, size_t length) noexcept {
  uffdio_register reg{};
  reg.range.start = reinterpret_cast<uintptr_t>(addr);
  reg.range.len = length;
  reg.mode = UFFDIO_REGISTER_MODE_MISSING | (wp_enabled_ ? UFFDIO_REGISTER_MODE_WP : 0);
  if (::ioctl(fd_.get(), UFFDIO_REGISTER, &reg) != 0) return Status::from_errno("UFFDIO_REGISTER");
  uint64_t needed = (1ULL << _UFFDIO_COPY) | (1ULL << _UFFDIO_WAKE);
  if (wp_enabled_) needed |= 1ULL << _UFFDIO_WRITEPROTECT;
  if ((reg.ioctls & needed) != needed) {
    (void)unregister_range(addr, length);
    return Status::error(ENOTSUP, "UFFDIO_REGISTER: range does not support copy/write-protect (not anonymous memory?)");
  }
  return Status::ok();
}

Status Userfaultfd::unregister_range(void* addr, size_t length) noexcept {
  uffdio_range range{reinterpret_cast<uintptr_t>(addr), length};
  if (::ioctl(fd_.get(), UFFDIO_UNREGISTER, &range) != 0) return Status::from_errno("UFFDIO_UNREGISTER");
  return Status::ok();
}

CopyOutcome Userfaultfd::copy(void* dst, const void* src, size_t length, bool write_protect, bool wake,
                              Status* error, size_t* copied) noexcept {
  uffdio_copy request{};
  request.dst = reinterpret_cast<uintptr_t>(dst);
  request.src = reinterpret_cast<uintptr_t>(src);
  request.len = length;
  request.mode = (wake ? 0 : UFFDIO_COPY_MODE_DONTWAKE) | (write_protect && wp_enabled_ ? UFFDIO_COPY_MODE_WP : 0);
  int rc = ::ioctl(fd_.get(), UFFDIO_COPY, &request);
  if (copied) *copied = request.copy > 0 ? static_cast<size_t>(request.copy) : 0;
  if (rc == 0) return CopyOutcome::kDone;
  if (errno == EEXIST) return CopyOutcome::kExists;
  if (errno == EAGAIN) return CopyOutcome::kRetry;
  if (error) *error = Status::from_errno("UFFDIO_COPY");
  return CopyOutcome::kRetry;
}

CopyOutcome Userfaultfd::zeropage(void* dst, size_t length, bool wake, Status* error) noexcept {
  uffdio_zeropage request{};
  request.range.start = reinterpret_cast<uintptr_t>(dst);
  request.range.len = length;
  request.mode = wake ? 0 : UFFDIO_ZEROPAGE_MODE_DONTWAKE;
  if (::ioctl(fd_.get(), UFFDIO_ZEROPAGE, &request) == 0) return CopyOutcome::kDone;
  if (errno == EEXIST) return CopyOutcome::kExists;
  if (errno == EAGAIN) return CopyOutcome::kRetry;
  if (error) *error = Status::from_errno("UFFDIO_ZEROPAGE");
  return CopyOutcome::kRetry;
}

Status Userfaultfd::write_protect(void* addr, size_t length, bool protect, bool wake) noexcept {
  if (!wp_enabled_) return Status::ok();
  uffdio_writeprotect request{};
  request.range.start = reinterpret_cast<uintptr_t>(addr);
  request.range.len = length;
  // The kernel wakes only on unprotect, and rejects WP combined with DONTWAKE.
  request.mode = protect ? UFFDIO_WRITEPROTECT_MODE_WP : (wake ? 0 : UFFDIO_WRITEPROTECT_MODE_DONTWAKE);
  for (;;) {
    if (::ioctl(fd_.get(), UFFDIO_WRITEPROTECT, &request) == 0) return Status::ok();
    if (errno != EAGAIN) return Status::from_errno("UFFDIO_WRITEPROTECT");
  }
}

Status Userfaultfd::wake(void* addr, size_t length) noexcept {
  uffdio_range range{reinterpret_cast<uintptr_t>(addr), length};
  if (::ioctl(fd_.get(), UFFDIO_WAKE, &range) != 0) return Status::from_errno("UFFDIO_WAKE");
  return Status::ok();
}

}  // namespace emp::os
