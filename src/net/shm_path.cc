#include "net/shm_path.h"

#include <sys/stat.h>
#include <unistd.h>

#include <stdexcept>
#include <string>

namespace emp::net {

ShmPath::ShmPath(UniqueFd file, uint64_t lease_bytes) : file_(std::move(file)), lease_bytes_(lease_bytes) {
  struct stat info {};
  if (!file_.valid() || ::fstat(file_.get(), &info) != 0 || static_cast<uint64_t>(info.st_size) < lease_bytes)
    throw std::runtime_error("vmd's shared-memory file is missing or smaller than the lease (" +
                             std::to_string(lease_bytes >> 20) + " MiB)");
}

Status ShmPath::read(std::span<const tier::IoSpan> spans, Deadline) noexcept { return transfer(spans, true); }
Status ShmPath::write(std::span<const tier::IoSpan> spans, Deadline) noexcept { return transfer(spans, false); }

Status ShmPath::transfer(std::span<const tier::IoSpan> spans, bool is_read) noexcept {
  if (broken()) return Status::error(ECONNRESET, "shared-memory path closed");
  for (const tier::IoSpan& span : spans) {
    if (span.offset > lease_bytes_ || span.length > lease_bytes_ - span.offset)
      return Status::error(EINVAL, "transfer outside the lease");
    size_t done = 0;
    while (done < span.length) {
      auto* at = static_cast<char*>(span.buffer) + done;
      off_t offset = static_cast<off_t>(span.offset + done);
      ssize_t n = is_read ? ::pread(file_.get(), at, span.length - done, offset)
                          : ::pwrite(file_.get(), at, span.length - done, offset);
      if (n > 0) {
        done += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      return n == 0 ? Status::error(EIO, "shared-memory file ended early") : Status::from_errno(is_read ? "pread" : "pwrite");
    }
  }
  return Status::ok();
}

}  // namespace emp::net
