#include "vmd/socket_server.h"

#if defined(__SANITIZE_THREAD__)
extern "C" void __tsan_ignore_thread_begin();
extern "C" void __tsan_ignore_thread_end();
#endif

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cstring>
#include <system_error>
#include <vector>

#include "common/log.h"
#include "net/auth.h"
#include "net/socket.h"

namespace emp::vmd {
namespace proto = net::protocol;
namespace {

constexpr int kHandshakeTimeoutSeconds = 10;
constexpr size_t kMaxConnections = 4096;
constexpr size_t kMaxPendingReplies = 256;

// Every byte or an error (EOF counts as one).
bool recv_exact(int fd, void* buffer, size_t length) noexcept {
  iovec iov{buffer, length};
  int error;
  return net::transfer_iov(fd, &iov, 1, false, &error) == length;
}

bool send_iov(int fd, iovec* iov, size_t count) noexcept {
  int error;
  net::transfer_iov(fd, iov, count, true, &error);
  return error == 0;
}

bool send_bytes(int fd, const void* bytes, size_t length) noexcept {
  iovec iov{const_cast<void*>(bytes), length};
  return send_iov(fd, &iov, 1);
}

// Lease memory is read and written by the threads of several connections (a client's
// read and write connections). Those accesses are ordered by the client — it sends a
// read of a block only after vmd acknowledged the write — which ThreadSanitizer cannot
// see across the network, so the bytes of the lease are outside its view; every other
// access of these threads is checked.
class LeaseBytesScope {
 public:
#if defined(__SANITIZE_THREAD__)
  LeaseBytesScope() noexcept { __tsan_ignore_thread_begin(); }
  ~LeaseBytesScope() { __tsan_ignore_thread_end(); }
#else
  LeaseBytesScope() noexcept = default;
#endif
  LeaseBytesScope(const LeaseBytesScope&) = delete;
  LeaseBytesScope& operator=(const LeaseBytesScope&) = delete;
};

}  // namespace

SocketServer::SocketServer(const std::string& bind_address) {
  listen_fd_ = net::tcp_listen(bind_address, 0, 256);
  port_ = net::local_port(listen_fd_.get());
  stop_fd_ = UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!stop_fd_.valid()) throw std::system_error(errno, std::generic_category(), "eventfd");
  acceptor_ = std::thread([this] { accept_loop(); });
}

SocketServer::~SocketServer() {
  uint64_t one = 1;
  (void)!::write(stop_fd_.get(), &one, sizeof one);
  if (acceptor_.joinable()) acceptor_.join();
  std::list<Connection> connections;
  {
    std::lock_guard lock(mu_);
    for (auto& connection : connections_) ::shutdown(connection.fd.get(), SHUT_RDWR);
    connections.splice(connections.end(), connections_);
    grants_.clear();
  }
  for (auto& connection : connections)
    if (connection.thread.joinable()) connection.thread.join();
}

void SocketServer::allow(uint64_t lease_id, const uint8_t (&ticket)[proto::kTokenBytes], uint64_t cookie,
                         std::shared_ptr<LeaseMemory> memory) {
  std::lock_guard lock(mu_);
  Grant& grant = grants_[cookie];
  grant.lease_id = lease_id;
  std::memcpy(grant.ticket, ticket, sizeof grant.ticket);
  grant.memory = std::move(memory);
}

void SocketServer::disconnect(uint64_t cookie) noexcept {
  std::lock_guard lock(mu_);
  grants_.erase(cookie);
  for (auto& connection : connections_)
    if (connection.cookie == cookie) ::shutdown(connection.fd.get(), SHUT_RDWR);
}

size_t SocketServer::connection_count() const noexcept {
  std::lock_guard lock(mu_);
  size_t count = 0;
  for (const auto& connection : connections_)
    if (connection.cookie != 0 && !connection.done.load()) ++count;
  return count;
}

void SocketServer::reap_locked() noexcept {
  for (auto it = connections_.begin(); it != connections_.end();) {
    if (it->done.load(std::memory_order_acquire)) {
      if (it->thread.joinable()) it->thread.join();
      it = connections_.erase(it);
    } else {
      ++it;
    }
  }
}

void SocketServer::accept_loop() noexcept {
  pthread_setname_np(pthread_self(), "vmd-data-accept");
  while (true) {
    pollfd fds[2] = {{stop_fd_.get(), POLLIN, 0}, {listen_fd_.get(), POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0 && errno != EINTR) return;
    if (fds[0].revents) return;
    if (!(fds[1].revents & POLLIN)) continue;
    UniqueFd fd(::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!fd.valid()) continue;
    std::lock_guard lock(mu_);
    reap_locked();
    if (connections_.size() >= kMaxConnections) {
      rejected_.fetch_add(1, std::memory_order_relaxed);
      continue;  // closes it
    }
    int one = 1;
    ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    timeval timeout{kHandshakeTimeoutSeconds, 0};
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
    Connection& connection = connections_.emplace_back();
    connection.fd = std::move(fd);
    try {
      connection.thread = std::thread([this, &connection] { serve(connection); });
    } catch (...) {
      connection.done.store(true);
    }
  }
}

void SocketServer::serve_for_testing(UniqueFd fd) noexcept {
  Connection connection;
  connection.fd = std::move(fd);
  serve(connection);
}

std::shared_ptr<LeaseMemory> SocketServer::admit(Connection& connection) noexcept {
  proto::DataConnect hello{};
  proto::DataAccept answer{proto::kDataMagic, EACCES, 0};
  std::shared_ptr<LeaseMemory> memory;
  if (recv_exact(connection.fd.get(), &hello, sizeof hello) && hello.magic == proto::kDataMagic &&
      hello.version == proto::kVersion) {
    std::lock_guard lock(mu_);
    for (const auto& [cookie, grant] : grants_) {
      if (grant.lease_id != hello.lease_id || !net::constant_time_equal(grant.ticket, hello.ticket)) continue;
      memory = grant.memory;
      connection.cookie = cookie;
      answer.status = 0;
      answer.lease_bytes = memory->size();
      break;
    }
  }
  if (!memory) {
    rejected_.fetch_add(1, std::memory_order_relaxed);
    EMP_WARN("vmd", "rejected a data connection with an invalid ticket");
  }
  if (!send_bytes(connection.fd.get(), &answer, sizeof answer)) return nullptr;
  return memory;
}

void SocketServer::serve(Connection& connection) noexcept {
  pthread_setname_np(pthread_self(), "vmd-data");
  const int fd = connection.fd.get();
  std::shared_ptr<LeaseMemory> memory = admit(connection);
  if (memory) {
    // Admitted: wait for requests as long as the client stays (disconnect() ends it).
    timeval none{0, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &none, sizeof none);
    std::byte* const base = memory->data();
    const uint64_t size = memory->size();
    std::vector<proto::DataReply> pending;  // write replies not sent yet
    pending.reserve(kMaxPendingReplies);
    auto flush = [&] {
      bool ok = pending.empty() || send_bytes(fd, pending.data(), pending.size() * sizeof(proto::DataReply));
      pending.clear();
      return ok;
    };
    while (true) {
      proto::DataRequest request;
      // Another request already waiting? Then the write replies can wait for it.
      ssize_t n = ::recv(fd, &request, sizeof request, MSG_DONTWAIT | MSG_WAITALL);
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        if (!flush()) break;
        n = 0;
      } else if (n <= 0) {
        break;
      }
      if (static_cast<size_t>(n) < sizeof request &&
          !recv_exact(fd, reinterpret_cast<char*>(&request) + n, sizeof request - static_cast<size_t>(n)))
        break;
      const bool valid_op = request.op == static_cast<uint32_t>(proto::DataOp::kRead) ||
                            request.op == static_cast<uint32_t>(proto::DataOp::kWrite);
      if (!valid_op || request.length > proto::kMaxDataTransfer || request.offset > size ||
          request.length > size - request.offset) {
        flush();
        proto::DataReply refusal{valid_op ? static_cast<uint32_t>(ERANGE) : static_cast<uint32_t>(EPROTO), 0};
        send_bytes(fd, &refusal, sizeof refusal);
        EMP_WARN("vmd", "data connection sent a request outside its lease or malformed; closing it");
        break;
      }
      if (request.op == static_cast<uint32_t>(proto::DataOp::kRead)) {
        if (!flush()) break;
        proto::DataReply reply{0, request.length};
        iovec iov[2] = {{&reply, sizeof reply}, {base + request.offset, request.length}};
        [[maybe_unused]] LeaseBytesScope lease_bytes;
        if (!send_iov(fd, iov, 2)) break;
      } else {
        [[maybe_unused]] LeaseBytesScope lease_bytes;
        if (!recv_exact(fd, base + request.offset, request.length)) break;
        pending.push_back({0, 0});
        if (pending.size() >= kMaxPendingReplies && !flush()) break;
      }
    }
  }
  {
    // Closed now, not when the entry is reaped at the next accept: a quiet vmd must not
    // hold the descriptors of connections that ended.
    std::lock_guard lock(mu_);
    ::shutdown(fd, SHUT_RDWR);
    connection.fd.reset();
  }
  memory.reset();
  connection.done.store(true, std::memory_order_release);
}

}  // namespace emp::vmd
