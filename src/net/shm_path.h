// ShmPath: the same-host data plane of a lease — the lease's own memory file, received
// from vmd over its local control socket, read and written with pread/pwrite on the
// calling thread. No network stack, no mapping in this process (so the lease never
// counts in its RSS, and a file vmd has released reads as zeros instead of faulting).
// Thread-safe; a short transfer (a file smaller than the lease) fails with EIO.
#pragma once

#include <atomic>

#include "common/unique_fd.h"
#include "net/data_path.h"

namespace emp::net {

class ShmPath final : public DataPath {
 public:
  // Takes the memory file; throws std::runtime_error when it is smaller than the lease.
  ShmPath(UniqueFd file, uint64_t lease_bytes);

  Status read(std::span<const tier::IoSpan> spans, Deadline deadline) noexcept override;
  Status write(std::span<const tier::IoSpan> spans, Deadline deadline) noexcept override;
  bool broken() const noexcept override { return broken_.load(std::memory_order_acquire); }
  void fail(Status) noexcept override { broken_.store(true, std::memory_order_release); }
  void abandon() noexcept override {
    broken_.store(true, std::memory_order_release);
    file_.reset();
  }

 private:
  Status transfer(std::span<const tier::IoSpan> spans, bool is_read) noexcept;
  UniqueFd file_;
  uint64_t lease_bytes_;
  std::atomic<bool> broken_{false};
};

}  // namespace emp::net
