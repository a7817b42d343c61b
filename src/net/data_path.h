// DataPath: one attachment of a client to its lease's memory on a donor — the seam
// between RemoteTier and the three data planes:
//   * SocketPath (tcp): requests and replies on plain TCP connections to vmd;
//   * ShmPath (shm, same host): pread/pwrite on the lease's memory file, handed over
//     vmd's local control socket — no network stack on the data path;
//   * FabricPath (verbs): one-sided RMA through libfabric.
// Offsets are within the lease. A path that fails (timeout, reset, a protocol error)
// is broken for good: every pending and later call fails, and the owner opens a new
// one (resuming the lease). Reads and writes use separate connections, so a fault's
// read never queues behind a write-back batch. Implementations are thread-safe: any
// number of threads may read and write at once.
#pragma once

#include <span>

#include "common/status.h"
#include "net/socket.h"
#include "tier/tier.h"

namespace emp::net {

class DataPath {
 public:
  virtual ~DataPath() = default;
  virtual Status read(std::span<const tier::IoSpan> spans, Deadline deadline) noexcept = 0;
  virtual Status write(std::span<const tier::IoSpan> spans, Deadline deadline) noexcept = 0;
  virtual bool broken() const noexcept = 0;
  // Breaks the path (idempotent) and wakes every call waiting on it.
  virtual void fail(Status why) noexcept = 0;
  // In a forked child: closes this process's copies of the path's descriptors.
  virtual void abandon() noexcept {}
};

}  // namespace emp::net
