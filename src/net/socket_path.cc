#include "net/socket_path.h"

#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <stdexcept>

namespace emp::net {
namespace {

constexpr size_t kChunk = 64;  // spans per request burst

// Bounded wait for the first reply byte before sleeping in recvmsg: a reply that comes
// within the spin needs no wake-up of this thread (on these VMs waking an idle vCPU
// costs more than the whole round trip; docs/performance.md).
void wait_briefly(int fd, std::chrono::microseconds spin) noexcept {
  if (spin.count() <= 0) return;
  const auto until = std::chrono::steady_clock::now() + spin;
  char byte;
  while (std::chrono::steady_clock::now() < until) {
    if (::recv(fd, &byte, 1, MSG_DONTWAIT | MSG_PEEK) != -1 || (errno != EAGAIN && errno != EWOULDBLOCK)) return;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  }
}

}  // namespace

std::unique_ptr<SocketPath> SocketPath::connect(const std::string& host, uint16_t port,
                                                const protocol::DataConnect& hello, const SocketPathOptions& options,
                                                Deadline deadline) {
  std::unique_ptr<SocketPath> path(new SocketPath());
  auto open_one = [&]() {
    std::string error;
    UniqueFd fd = tcp_connect(host, port, deadline, &error);
    if (!fd.valid()) throw std::runtime_error("cannot open a data connection to " + host + ":" + std::to_string(port) + ": " + error);
    Status status = send_all(fd.get(), {reinterpret_cast<const uint8_t*>(&hello), sizeof hello}, deadline);
    protocol::DataAccept accept{};
    if (status) status = recv_all(fd.get(), {reinterpret_cast<uint8_t*>(&accept), sizeof accept}, deadline);
    if (!status) throw std::runtime_error("vmd did not accept the data connection: " + status.to_string());
    if (accept.magic != protocol::kDataMagic) throw std::runtime_error("vmd's data port does not speak the EMP data protocol");
    if (accept.status != 0)
      throw std::runtime_error(std::string("vmd refused the data connection: ") + std::strerror(static_cast<int>(accept.status)));
    path->lease_bytes_ = accept.lease_bytes;
    path->read_spin_ = options.read_spin;
    // Blocking I/O from here on, bounded by the socket timeouts.
    timeval timeout{static_cast<time_t>(options.op_timeout.count() / 1000),
                    static_cast<suseconds_t>(options.op_timeout.count() % 1000 * 1000)};
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
    auto connection = std::make_unique<Connection>();
    connection->fd = std::move(fd);
    return connection;
  };
  for (unsigned i = 0; i < std::max(1u, options.read_connections); ++i) path->readers_.push_back(open_one());
  for (unsigned i = 0; i < std::max(1u, options.write_connections); ++i) path->writers_.push_back(open_one());
  return path;
}

SocketPath::~SocketPath() = default;

void SocketPath::fail(Status why) noexcept {
  {
    std::lock_guard lock(failure_mu_);
    if (broken_.load()) return;
    failure_ = why;
    broken_.store(true, std::memory_order_release);
  }
  // Wakes callers blocked in send/recv; the descriptors close with the path.
  for (auto* pool : {&readers_, &writers_})
    for (auto& connection : *pool) ::shutdown(connection->fd.get(), SHUT_RDWR);
}

void SocketPath::abandon() noexcept {
  broken_.store(true, std::memory_order_release);
  for (auto* pool : {&readers_, &writers_})
    for (auto& connection : *pool) connection->fd.reset();
}

SocketPath::Connection& SocketPath::take(std::vector<std::unique_ptr<Connection>>& pool,
                                         std::atomic<unsigned>& next) noexcept {
  unsigned start = next.fetch_add(1, std::memory_order_relaxed);
  for (size_t i = 0; i < pool.size(); ++i) {
    Connection& candidate = *pool[(start + i) % pool.size()];
    if (candidate.mu.try_lock()) return candidate;
  }
  Connection& chosen = *pool[start % pool.size()];
  chosen.mu.lock();
  return chosen;
}

Status SocketPath::read(std::span<const tier::IoSpan> spans, Deadline) noexcept { return on_free(spans, true); }
Status SocketPath::write(std::span<const tier::IoSpan> spans, Deadline) noexcept { return on_free(spans, false); }

Status SocketPath::on_free(std::span<const tier::IoSpan> spans, bool is_read) noexcept {
  if (broken()) return Status::error(ECONNRESET, "data connection broken");
  Connection& connection = is_read ? take(readers_, next_reader_) : take(writers_, next_writer_);
  Status status = run(connection, spans, is_read);
  connection.mu.unlock();
  return status;
}

Status SocketPath::broken_by(Status why) noexcept {
  fail(why);
  return why;
}

Status SocketPath::run(Connection& connection, std::span<const tier::IoSpan> spans, bool is_read) noexcept {
  const int fd = connection.fd.get();
  for (size_t first = 0; first < spans.size(); first += kChunk) {
    const size_t count = std::min(kChunk, spans.size() - first);
    protocol::DataRequest requests[kChunk];
    protocol::DataReply replies[kChunk];
    iovec iov[2 * kChunk];
    size_t iov_count = 0;
    for (size_t i = 0; i < count; ++i) {
      const tier::IoSpan& span = spans[first + i];
      if (span.length > protocol::kMaxDataTransfer) return Status::error(EINVAL, "data transfer too large");
      requests[i] = {static_cast<uint32_t>(is_read ? protocol::DataOp::kRead : protocol::DataOp::kWrite),
                     static_cast<uint32_t>(span.length), span.offset};
    }
    int error = 0;
    if (is_read) {
      iovec out{requests, count * sizeof(protocol::DataRequest)};
      transfer_iov(fd, &out, 1, true, &error);
    } else {
      for (size_t i = 0; i < count; ++i) {
        iov[iov_count++] = {&requests[i], sizeof(protocol::DataRequest)};
        iov[iov_count++] = {spans[first + i].buffer, spans[first + i].length};
      }
      transfer_iov(fd, iov, iov_count, true, &error);
    }
    if (error) return broken_by(Status::error(error, is_read ? "sending read requests to vmd" : "sending a write batch to vmd"));
    // Replies (and a read's bytes) land where they belong in one receive.
    if (is_read) wait_briefly(fd, read_spin_);
    iov_count = 0;
    for (size_t i = 0; i < count; ++i) {
      iov[iov_count++] = {&replies[i], sizeof(protocol::DataReply)};
      if (is_read) iov[iov_count++] = {spans[first + i].buffer, spans[first + i].length};
    }
    size_t received = transfer_iov(fd, iov, iov_count, false, &error);
    // Check every complete reply, in order: a refusal is the last thing vmd sent.
    size_t position = 0;
    for (size_t i = 0; i < count; ++i) {
      if (received < position + sizeof(protocol::DataReply)) break;
      const protocol::DataReply& reply = replies[i];
      if (reply.status != 0) return broken_by(Status::error(static_cast<int>(reply.status), "vmd refused a data request"));
      position += sizeof(protocol::DataReply) + (is_read ? spans[first + i].length : 0);
      if (is_read && reply.length != spans[first + i].length)
        return broken_by(Status::error(EPROTO, "vmd sent a reply of the wrong length"));
    }
    if (error) return broken_by(Status::error(error, error == ETIMEDOUT ? "vmd did not answer in time" : "receiving from vmd"));
  }
  return Status::ok();
}

}  // namespace emp::net
