#include "net/socket.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <climits>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
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

bool split_host_port(const std::string& text, std::string* address, std::string* port) {
  size_t colon = text.rfind(':');
  if (colon == std::string::npos) return false;
  *address = text.substr(0, colon);
  if (address->size() >= 2 && address->front() == '[' && address->back() == ']')
    *address = address->substr(1, address->size() - 2);
  *port = text.substr(colon + 1);
  return true;
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

size_t transfer_iov(int fd, iovec* iov, size_t count, bool sending, int* error) noexcept {
  size_t moved = 0;
  *error = 0;
  while (count > 0) {
    msghdr message{};
    message.msg_iov = iov;
    message.msg_iovlen = std::min<size_t>(count, IOV_MAX);
    ssize_t n = sending ? ::sendmsg(fd, &message, MSG_NOSIGNAL) : ::recvmsg(fd, &message, MSG_WAITALL);
    if (n < 0) {
      if (errno == EINTR) continue;
      *error = errno == EAGAIN || errno == EWOULDBLOCK ? ETIMEDOUT : errno;
      return moved;
    }
    if (n == 0) {
      *error = ECONNRESET;
      return moved;
    }
    moved += static_cast<size_t>(n);
    size_t left = static_cast<size_t>(n);
    while (count > 0 && left >= iov->iov_len) {
      left -= iov->iov_len;
      ++iov;
      --count;
    }
    if (count > 0) {
      iov->iov_base = static_cast<char*>(iov->iov_base) + left;
      iov->iov_len -= left;
    }
  }
  return moved;
}

bool is_local_host(const std::string& host) {
  if (is_loopback_address(host)) return true;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* result = nullptr;
  if (::getaddrinfo(host.c_str(), nullptr, &hints, &result) != 0) return false;
  bool local = false;
  for (addrinfo* ai = result; ai && !local; ai = ai->ai_next) {
    if (ai->ai_family == AF_INET) {
      auto* in = reinterpret_cast<sockaddr_in*>(ai->ai_addr);
      if ((ntohl(in->sin_addr.s_addr) >> 24) == 127) local = true;
    } else if (ai->ai_family == AF_INET6) {
      if (IN6_IS_ADDR_LOOPBACK(&reinterpret_cast<sockaddr_in6*>(ai->ai_addr)->sin6_addr)) local = true;
    }
    if (local) break;
    // An address this host owns can be bound (port 0: nothing is taken).
    UniqueFd probe(::socket(ai->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    if (probe.valid() && ::bind(probe.get(), ai->ai_addr, ai->ai_addrlen) == 0) local = true;
  }
  ::freeaddrinfo(result);
  return local;
}

std::string local_control_name(uint16_t port) { return "emp-vmd:" + std::to_string(port); }

namespace {

socklen_t abstract_address(const std::string& name, sockaddr_un* address) {
  *address = {};
  address->sun_family = AF_UNIX;
  size_t length = std::min(name.size(), sizeof address->sun_path - 1);
  std::memcpy(address->sun_path + 1, name.data(), length);  // sun_path[0] = 0: abstract
  return static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + length);
}

}  // namespace

UniqueFd local_listen(const std::string& name, int backlog) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) throw std::system_error(errno, std::generic_category(), "socket(AF_UNIX)");
  sockaddr_un address;
  socklen_t length = abstract_address(name, &address);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&address), length) != 0)
    throw std::system_error(errno, std::generic_category(), "cannot listen on the local socket @" + name);
  if (::listen(fd.get(), backlog) != 0) throw std::system_error(errno, std::generic_category(), "listen");
  return fd;
}

UniqueFd local_connect(const std::string& name, std::string* error) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) {
    *error = std::strerror(errno);
    return UniqueFd();
  }
  sockaddr_un address;
  socklen_t length = abstract_address(name, &address);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&address), length) != 0) {
    *error = std::strerror(errno);
    return UniqueFd();
  }
  return fd;
}

Status send_all(int fd, std::span<const uint8_t> bytes, Deadline deadline, int pass_fd) noexcept {
  size_t done = 0;
  while (done < bytes.size()) {
    iovec iov{const_cast<uint8_t*>(bytes.data() + done), bytes.size() - done};
    msghdr message{};
    message.msg_iov = &iov;
    message.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    if (pass_fd >= 0 && done == 0) {
      message.msg_control = control;
      message.msg_controllen = sizeof control;
      cmsghdr* header = CMSG_FIRSTHDR(&message);
      header->cmsg_level = SOL_SOCKET;
      header->cmsg_type = SCM_RIGHTS;
      header->cmsg_len = CMSG_LEN(sizeof(int));
      std::memcpy(CMSG_DATA(header), &pass_fd, sizeof(int));
    }
    ssize_t n = ::sendmsg(fd, &message, MSG_NOSIGNAL | MSG_DONTWAIT);
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

Status recv_all(int fd, std::span<uint8_t> bytes, Deadline deadline, UniqueFd* received) noexcept {
  size_t done = 0;
  while (done < bytes.size()) {
    pollfd pfd{fd, POLLIN, 0};
    int ready = ::poll(&pfd, 1, remaining_ms(deadline));
    if (ready == 0) return Status::error(ETIMEDOUT, "control receive timed out");
    if (ready < 0) {
      if (errno == EINTR) continue;
      return Status::from_errno("poll");
    }
    iovec iov{bytes.data() + done, bytes.size() - done};
    msghdr message{};
    message.msg_iov = &iov;
    message.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(4 * sizeof(int))];
    message.msg_control = control;
    message.msg_controllen = sizeof control;
    ssize_t n = ::recvmsg(fd, &message, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n >= 0) {
      for (cmsghdr* header = CMSG_FIRSTHDR(&message); header; header = CMSG_NXTHDR(&message, header)) {
        if (header->cmsg_level != SOL_SOCKET || header->cmsg_type != SCM_RIGHTS) continue;
        size_t count = (header->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count; ++i) {
          int passed;
          std::memcpy(&passed, CMSG_DATA(header) + i * sizeof(int), sizeof(int));
          if (received && i == 0) {
            *received = UniqueFd(passed);
          } else {
            ::close(passed);
          }
        }
      }
    }
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
