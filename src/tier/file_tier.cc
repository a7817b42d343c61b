#include "tier/file_tier.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <stdexcept>
#include <system_error>

#include "common/log.h"
#include "common/size_parse.h"

namespace emp::tier {
namespace {

[[noreturn]] void fail_errno(const TierSpec& spec, const std::string& what) {
  throw std::system_error(errno, std::generic_category(), "memory path element '" + spec.element + "': " + what);
}

}  // namespace

FileTier::FileTier(const TierSpec& spec, UniqueFd fd, bool direct, bool in_memory)
    : Tier(spec.kind == TierSpec::Kind::kDevice ? "device:" + spec.location : "file:" + spec.location, spec.size_bytes),
      spec_(spec),
      path_(spec.location),
      base_offset_(spec.offset_bytes),
      fd_(std::move(fd)),
      direct_(direct),
      in_memory_(in_memory) {
  for (Ring& ring : rings_) {
    int rc = io_uring_queue_init(kRingDepth, &ring.ring, 0);
    if (rc < 0) {
      errno = -rc;
      throw std::system_error(-rc, std::generic_category(), "io_uring_queue_init for " + path_);
    }
    ring.ready = true;
  }
}

FileTier::~FileTier() {
  for (Ring& ring : rings_)
    if (ring.ready) io_uring_queue_exit(&ring.ring);
}

std::unique_ptr<Tier> FileTier::continue_in_child(std::unique_ptr<ChildPreparation> /*preparation*/) {
  UniqueFd fd(::fcntl(fd_.get(), F_DUPFD_CLOEXEC, 0));
  if (!fd.valid()) throw std::system_error(errno, std::generic_category(), "duplicating the descriptor of " + path_);
  return std::unique_ptr<FileTier>(new FileTier(spec_, std::move(fd), direct_, in_memory_));
}

void FileTier::abandon_in_child() noexcept {
  for (Ring& ring : rings_) {
    if (ring.ready) io_uring_queue_exit(&ring.ring);
    ring.ready = false;
  }
}

std::unique_ptr<FileTier> FileTier::open(const TierSpec& spec) {
  if (spec.size_bytes % kTierAlignment || spec.offset_bytes % kTierAlignment)
    throw std::invalid_argument("memory path element '" + spec.element + "': size and offset must be multiples of 4 KiB");
  bool is_device = spec.kind == TierSpec::Kind::kDevice;
  int flags = O_RDWR | O_CLOEXEC | (is_device ? 0 : O_CREAT);
  UniqueFd fd(::open(spec.location.c_str(), flags | O_DIRECT, 0600));
  bool direct = true;
  if (!fd.valid() && errno == EINVAL) {  // e.g. tmpfs: no O_DIRECT
    fd.reset(::open(spec.location.c_str(), flags, 0600));
    direct = false;
  }
  if (!fd.valid()) fail_errno(spec, "cannot open " + spec.location);
  struct stat st{};
  if (::fstat(fd.get(), &st) != 0) fail_errno(spec, "cannot stat " + spec.location);
  uint64_t needed = spec.offset_bytes + spec.size_bytes;
  if (S_ISBLK(st.st_mode)) {
    uint64_t device_bytes = 0;
    if (::ioctl(fd.get(), BLKGETSIZE64, &device_bytes) != 0) fail_errno(spec, "cannot read the size of " + spec.location);
    if (device_bytes < needed)
      throw std::invalid_argument("memory path element '" + spec.element + "': device " + spec.location + " holds " +
                                  format_size(device_bytes) + ", less than offset + size = " + format_size(needed));
  } else if (S_ISREG(st.st_mode)) {
    if (static_cast<uint64_t>(st.st_size) < needed && ::ftruncate(fd.get(), static_cast<off_t>(needed)) != 0)
      fail_errno(spec, "cannot extend " + spec.location + " to " + format_size(needed));
  } else {
    throw std::invalid_argument("memory path element '" + spec.element + "': " + spec.location +
                                " is neither a regular file nor a block device");
  }
  struct statfs filesystem {};
  bool in_memory = ::fstatfs(fd.get(), &filesystem) == 0 && filesystem.f_type == TMPFS_MAGIC;
  if (!direct && !in_memory)
    EMP_WARN("tier", "%s does not support O_DIRECT; using buffered I/O", spec.location.c_str());
  // Two processes must never share a region (e.g. a shell under `emp run` and the
  // programs it starts): each holds an open-file-description lock on its range.
  struct flock lock {};
  lock.l_type = F_WRLCK;
  lock.l_whence = SEEK_SET;
  lock.l_start = static_cast<off_t>(spec.offset_bytes);
  lock.l_len = static_cast<off_t>(spec.size_bytes);
  if (::fcntl(fd.get(), F_OFD_SETLK, &lock) == 0) return std::unique_ptr<FileTier>(new FileTier(spec, std::move(fd), direct, in_memory));
  if (errno != EAGAIN && errno != EACCES) fail_errno(spec, "cannot lock " + spec.location);
  if (is_device)
    throw std::invalid_argument("memory path element '" + spec.element + "': that region of " + spec.location +
                                " is in use by another EMP process");
  // A file: this process gets a private, unnamed file of the same size beside it.
  std::string directory = spec.location.substr(0, spec.location.find_last_of('/') + 1);
  if (directory.empty()) directory = ".";
  UniqueFd own(::open(directory.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC | (direct ? O_DIRECT : 0), 0600));
  if (!own.valid() && direct) {
    own.reset(::open(directory.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600));
    direct = false;
  }
  if (!own.valid() || ::ftruncate(own.get(), static_cast<off_t>(spec.size_bytes)) != 0)
    fail_errno(spec, spec.location + " is in use by another EMP process, and no private file could be made in " + directory);
  EMP_INFO("tier", "%s is in use by another EMP process: this process (%d) uses a private unnamed file of %s in %s",
           spec.location.c_str(), static_cast<int>(::getpid()), format_size(spec.size_bytes).c_str(), directory.c_str());
  TierSpec own_spec = spec;
  own_spec.offset_bytes = 0;
  return std::unique_ptr<FileTier>(new FileTier(own_spec, std::move(own), direct, in_memory));
}

std::string FileTier::describe() const {
  return name() + " (" + format_size(capacity()) + " at offset " + format_size(base_offset_) +
         (in_memory_ ? ", in memory (tmpfs)" : direct_ ? ", O_DIRECT" : ", buffered") + ")";
}

Status FileTier::read_impl(std::span<const IoSpan> spans) noexcept {
  return uses_io_uring(spans) ? submit(spans, false) : transfer_in_place(spans, false);
}
Status FileTier::write_impl(std::span<const IoSpan> spans) noexcept {
  return uses_io_uring(spans) ? submit(spans, true) : transfer_in_place(spans, true);
}

bool FileTier::uses_io_uring(std::span<const IoSpan> spans) const noexcept {
  // io_uring pays off only where several device requests overlap. Page-cache and tmpfs
  // I/O is a memory copy that io_uring hands to its worker threads (a wake-up and a
  // context switch per batch: ~30 µs per 4 KiB fault read on tmpfs, docs/performance.md),
  // and a single request waits for the device either way.
  return direct_ && !in_memory_ && spans.size() > 1;
}

Status FileTier::transfer_in_place(std::span<const IoSpan> spans, bool is_write) noexcept {
  // On the calling thread; adjacent spans with adjacent buffers go together in one call.
  Status first_error;
  for (size_t i = 0; i < spans.size();) {
    size_t j = i + 1;
    while (j < spans.size() && spans[j].offset == spans[j - 1].offset + spans[j - 1].length &&
           static_cast<char*>(spans[j].buffer) == static_cast<char*>(spans[j - 1].buffer) + spans[j - 1].length)
      ++j;
    size_t length = static_cast<size_t>(spans[j - 1].offset + spans[j - 1].length - spans[i].offset);
    Status status = transfer_range(static_cast<char*>(spans[i].buffer), length, spans[i].offset, is_write,
                                   is_write ? "tier file write" : "tier file read");
    if (first_error) first_error = status;
    i = j;
  }
  return first_error;
}

Status FileTier::transfer_range(char* buffer, size_t length, uint64_t offset, bool is_write,
                                const char* what) noexcept {
  off_t start = static_cast<off_t>(base_offset_ + offset);
  for (size_t moved = 0; moved < length;) {
    ssize_t n = is_write ? ::pwrite(fd_.get(), buffer + moved, length - moved, start + static_cast<off_t>(moved))
                         : ::pread(fd_.get(), buffer + moved, length - moved, start + static_cast<off_t>(moved));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Status::error(n == 0 ? EIO : errno, what);
    moved += static_cast<size_t>(n);
  }
  return Status::ok();
}

Status FileTier::submit(std::span<const IoSpan> spans, bool is_write) noexcept {
  unsigned start = next_ring_.fetch_add(1, std::memory_order_relaxed);
  // Prefer an idle ring; otherwise wait for the one we were handed.
  for (size_t i = 0; i < kRings; ++i) {
    Ring& ring = rings_[(start + i) % kRings];
    std::unique_lock lock(ring.mutex, std::try_to_lock);
    if (lock.owns_lock()) return submit_on(ring, spans, is_write);
  }
  Ring& ring = rings_[start % kRings];
  std::lock_guard lock(ring.mutex);
  return submit_on(ring, spans, is_write);
}

Status FileTier::submit_on(Ring& ring, std::span<const IoSpan> spans, bool is_write) noexcept {
  while (!spans.empty()) {
    size_t count = std::min<size_t>(spans.size(), kRingDepth);
    for (size_t i = 0; i < count; ++i) {
      io_uring_sqe* sqe = io_uring_get_sqe(&ring.ring);
      if (!sqe) return Status::error(EBUSY, "io_uring submission queue full");
      const IoSpan& span = spans[i];
      off_t offset = static_cast<off_t>(base_offset_ + span.offset);
      if (is_write)
        io_uring_prep_write(sqe, fd_.get(), span.buffer, static_cast<unsigned>(span.length), offset);
      else
        io_uring_prep_read(sqe, fd_.get(), span.buffer, static_cast<unsigned>(span.length), offset);
      io_uring_sqe_set_data64(sqe, i);
    }
    // Submitted first, then waited for: a signal interrupts only the wait, which is retried.
    int submitted = io_uring_submit(&ring.ring);
    if (submitted < 0) return Status::error(-submitted, is_write ? "io_uring write submit" : "io_uring read submit");
    Status first_error;
    for (size_t done = 0; done < count; ++done) {
      io_uring_cqe* cqe = nullptr;
      int rc;
      do {
        rc = io_uring_wait_cqe(&ring.ring, &cqe);
      } while (rc == -EINTR);
      if (rc < 0) return Status::error(-rc, "io_uring wait");
      const IoSpan& span = spans[io_uring_cqe_get_data64(cqe)];
      int res = cqe->res;
      io_uring_cqe_seen(&ring.ring, cqe);
      if (res < 0) {
        if (first_error) first_error = Status::error(-res, is_write ? "tier file write" : "tier file read");
        continue;
      }
      // Short transfer: finish it synchronously.
      size_t moved = static_cast<size_t>(res);
      if (moved < span.length && first_error)
        first_error = transfer_range(static_cast<char*>(span.buffer) + moved, span.length - moved, span.offset + moved,
                                     is_write, "tier file short transfer");
    }
    if (!first_error) return first_error;
    spans = spans.subspan(count);
  }
  return Status::ok();
}

}  // namespace emp::tier
