#include "net/socket.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#include <cstring>
#include <stdexcept>
#include <system_error>

namespace emp::net {

int remaining_ms(Deadline deadline) noexcept {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  if (left < 0) return 0;
  return left > 1'000'000 ? 1'000'000 : static_cast<int>(left);
}

UniqueFd tcp_connect(const std::string& host, uint16_t port, Deadline deadline, std::string* error) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* result = nullptr;
  std::string service = std::to_string(port);
  int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &result);
  if (rc != 0) {
    *error = std::string("cannot resolve host: ") + gai_strerror(rc);
    return UniqueFd();
  }
  std::string last = "no address";
  for (addrinfo* ai = result; ai; ai = ai->ai_next) {
    UniqueFd fd(::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol));
    if (!fd.valid()) {
      last = std::strerror(errno);
      continue;
    }
    if (::connect(fd.get(), ai->ai_addr, ai->ai_addrlen) != 0) {
      if (errno != EINPROGRESS) {
        last = std::strerror(errno);
        continue;
      }
      pollfd pfd{fd.get(), POLLOUT, 0};
      int n = ::poll(&pfd, 1, remaining_ms(deadline));
      if (n <= 0) {
        last = n == 0 ? "timed out" : std::strerror(errno);
        continue;
      }
      int so_error = 0;
      socklen_t len = sizeof so_error;
      ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &so_error, &len);
      if (so_error != 0) {
        last = std::strerror(so_error);
        continue;
      }
    }
    int flags = ::fcntl(fd.get(), F_GETFL);
    ::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK);
    int one = 1;
    ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    ::freeaddrinfo(result);
    return fd;
  }
  ::freeaddrinfo(result);
  *error = last;
  return UniqueFd();
}

UniqueFd tcp_listen(const std::string& address, uint16_t port, int backlog) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* result = nullptr;
  std::string service = std::to_string(port);
  int rc = ::getaddrinfo(address.empty() ? nullptr : address.c_str(), service.c_str(), &hints, &result);
  if (rc != 0) throw std::runtime_error("cannot resolve bind address '" + address + "': " + gai_strerror(rc));
  // Prefer IPv6 any (dual stack) when no address is given.
  addrinfo* chosen = result;
  if (address.empty())
    for (addrinfo* ai = result; ai; ai = ai->ai_next)
      if (ai->ai_family == AF_INET6) chosen = ai;
  UniqueFd fd(::socket(chosen->ai_family, chosen->ai_socktype | SOCK_CLOEXEC, chosen->ai_protocol));
  if (!fd.valid()) {
    ::freeaddrinfo(result);
    throw std::system_error(errno, std::generic_category(), "socket");
  }
  int one = 1, zero = 0;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (chosen->ai_family == AF_INET6) ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
  if (::bind(fd.get(), chosen->ai_addr, chosen->ai_addrlen) != 0) {
    int err = errno;
    ::freeaddrinfo(result);
    throw std::system_error(err, std::generic_category(),
                            "cannot listen on " + (address.empty() ? std::string("*") : address) + ":" + service);
  }
  ::freeaddrinfo(result);
  if (::listen(fd.get(), backlog) != 0) throw std::system_error(errno, std::generic_category(), "listen");
  return fd;
}

uint16_t local_port(int fd) noexcept {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return 0;
  if (ss.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  if (ss.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  return 0;
}

std::string peer_address(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "?";
  char text[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) {
    ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(&ss)->sin_addr, text, sizeof text);
  } else if (ss.ss_family == AF_INET6) {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&ss);
    if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
      ::inet_ntop(AF_INET, &in6->sin6_addr.s6_addr[12], text, sizeof text);
    } else {
      ::inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof text);
    }
  }
  return text;
}

bool is_loopback_address(const std::string& address) {
  if (address == "localhost" || address == "::1") return true;
  in_addr v4{};
  if (::inet_pton(AF_INET, address.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  return false;
}

Status send_all(int fd, std::span<const uint8_t> bytes, Deadline deadline) noexcept {
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::send(fd, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      done += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd pfd{fd, POLLOUT, 0};
      int ready = ::poll(&pfd, 1, remaining_ms(deadline));
      if (ready == 0) return Status::error(ETIMEDOUT, "control send timed out");
      if (ready < 0 && errno != EINTR) return Status::from_errno("poll");
      continue;
    }
    return Status::from_errno("control send");
  }
  return Status::ok();
}

Status recv_all(int fd, std::span<uint8_t> bytes, Deadline deadline) noexcept {
  size_t done = 0;
  while (done < bytes.size()) {
    pollfd pfd{fd, POLLIN, 0};
    int ready = ::poll(&pfd, 1, remaining_ms(deadline));
    if (ready == 0) return Status::error(ETIMEDOUT, "control receive timed out");
    if (ready < 0) {
      if (errno == EINTR) continue;
      return Status::from_errno("poll");
    }
    ssize_t n = ::recv(fd, bytes.data() + done, bytes.size() - done, MSG_DONTWAIT);
    if (n > 0) {
      done += static_cast<size_t>(n);
      continue;
    }
    if (n == 0) return Status::error(ECONNRESET, "control connection closed by peer");
    if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
    return Status::from_errno("control receive");
  }
  return Status::ok();
}

}  // namespace emp::net
