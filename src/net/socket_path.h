// SocketPath: the tcp data plane of a lease — a few plain TCP connections to vmd's
// socket data server, speaking protocol.h's DataRequest/DataReply. A batch of spans
// costs one send and one receive on one connection (requests pipelined, replies read
// straight into the caller's buffers), so a 4 KiB fault read costs what a plain socket
// round trip costs. Reads and writes have their own connections; a caller takes a free
// connection of its kind (or waits for one), so concurrent fault threads do not queue
// behind each other while a connection is idle. A reader polls its socket for a
// bounded few tens of microseconds before it sleeps in recvmsg (a wake-up costs more
// than that here); writers sleep at once. Every sleep is bounded by the socket
// timeouts. Thread-safe; fail() shuts every connection down, which wakes any caller
// blocked on it.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/unique_fd.h"
#include "net/data_path.h"
#include "net/protocol.h"

namespace emp::net {

struct SocketPathOptions {
  unsigned read_connections = 2;
  unsigned write_connections = 1;
  std::chrono::milliseconds op_timeout{5000};  // one batch
  // A read polls for its reply this long before it sleeps (measured best at 30-50 us
  // for 4 KiB faults on 2 vCPUs; docs/performance.md).
  std::chrono::microseconds read_spin{40};
};

class SocketPath final : public DataPath {
 public:
  // Connects to host:port and presents `hello` on every connection. Throws
  // std::runtime_error ("vmd refused the data connection: ...").
  static std::unique_ptr<SocketPath> connect(const std::string& host, uint16_t port,
                                             const protocol::DataConnect& hello, const SocketPathOptions& options,
                                             Deadline deadline);
  ~SocketPath() override;

  Status read(std::span<const tier::IoSpan> spans, Deadline deadline) noexcept override;
  Status write(std::span<const tier::IoSpan> spans, Deadline deadline) noexcept override;
  bool broken() const noexcept override { return broken_.load(std::memory_order_acquire); }
  void fail(Status why) noexcept override;
  void abandon() noexcept override;
  uint64_t lease_bytes() const noexcept { return lease_bytes_; }

 private:
  struct Connection {
    UniqueFd fd;
    std::mutex mu;
  };
  SocketPath() = default;
  Connection& take(std::vector<std::unique_ptr<Connection>>& pool, std::atomic<unsigned>& next) noexcept;  // locked
  // Runs the batch on a free connection of its kind (waiting for one if all are busy).
  Status on_free(std::span<const tier::IoSpan> spans, bool is_read) noexcept;
  Status run(Connection& connection, std::span<const tier::IoSpan> spans, bool is_read) noexcept;
  Status broken_by(Status why) noexcept;  // fails the path (the stream is out of step) and returns why

  std::vector<std::unique_ptr<Connection>> readers_;
  std::vector<std::unique_ptr<Connection>> writers_;
  std::atomic<unsigned> next_reader_{0};
  std::atomic<unsigned> next_writer_{0};
  uint64_t lease_bytes_ = 0;
  std::chrono::microseconds read_spin_{0};
  std::atomic<bool> broken_{false};
  std::mutex failure_mu_;
  Status failure_;
};

}  // namespace emp::net
