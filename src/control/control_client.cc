#include "control/control_client.h"

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "control/socket_location.h"

namespace emp::control {
namespace {

using Kind = ControlClientError::Kind;
using Clock = std::chrono::steady_clock;

int remaining_ms(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left <= 0 ? 0 : static_cast<int>(left);
}

}  // namespace

ControlClient ControlClient::connect_pid(pid_t pid, std::chrono::milliseconds timeout) {
  if (pid <= 0) throw ControlClientError(Kind::kNotFound, "invalid pid " + std::to_string(pid));
  bool alive = ::kill(pid, 0) == 0 || errno == EPERM;
  if (!alive) throw ControlClientError(Kind::kNotFound, "no process with pid " + std::to_string(pid));
  auto directories = candidate_directories(::geteuid(), std::getenv("XDG_RUNTIME_DIR"));
  auto path = find_socket(pid, directories);
  if (!path) {
    std::string hint = ::geteuid() == 0 ? "" : " (or it belongs to another user: try as root)";
    throw ControlClientError(Kind::kNotFound, "process " + std::to_string(pid) +
                                                  " is not an EMP process: it has no control socket" + hint);
  }
  return connect_path(*path, pid, timeout);
}

ControlClient ControlClient::connect_path(const std::string& path, pid_t expected_pid, std::chrono::milliseconds timeout) {
  struct sockaddr_un address {};
  address.sun_family = AF_UNIX;
  if (path.size() >= sizeof address.sun_path) throw ControlClientError(Kind::kFailed, "socket path too long: " + path);
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) throw ControlClientError(Kind::kFailed, std::string("socket: ") + std::strerror(errno));
  // Unix stream connects complete at once or fail (EAGAIN when the backlog is full).
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    int error = errno;
    std::string who = expected_pid > 0 ? "process " + std::to_string(expected_pid) : path;
    if (error == EACCES || error == EPERM)
      throw ControlClientError(Kind::kPermissionDenied,
                               "permission denied opening the control socket of " + who + " (" + path + ")");
    if (error == ECONNREFUSED || error == ENOENT)
      throw ControlClientError(Kind::kNotFound, who + " is not serving its control socket " + path + " (stale)");
    throw ControlClientError(Kind::kFailed, "cannot connect to " + path + ": " + std::strerror(error));
  }
  struct ucred cred {};
  socklen_t length = sizeof cred;
  if (::getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &cred, &length) != 0)
    throw ControlClientError(Kind::kFailed, std::string("SO_PEERCRED: ") + std::strerror(errno));
  if (expected_pid > 0 && cred.pid != expected_pid)
    throw ControlClientError(Kind::kNotFound, "the socket " + path + " is served by pid " + std::to_string(cred.pid) +
                                                  ", not by " + std::to_string(expected_pid));
  return ControlClient(std::move(fd), path, expected_pid > 0 ? expected_pid : cred.pid, timeout);
}

std::string ControlClient::request_raw(std::string_view line) {
  Clock::time_point deadline = Clock::now() + timeout_;
  std::string out(line);
  out += '\n';
  size_t sent = 0;
  while (sent < out.size()) {
    ssize_t n = ::send(fd_.get(), out.data() + sent, out.size() - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      sent += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      struct pollfd pfd {fd_.get(), POLLOUT, 0};
      if (::poll(&pfd, 1, remaining_ms(deadline)) <= 0)
        throw ControlClientError(Kind::kFailed, "timed out sending to process " + std::to_string(pid_));
      continue;
    }
    // The server may have answered and closed (e.g. a refused peer): read what it sent.
    int error = errno;
    char chunk[4096];
    ssize_t got;
    while ((got = ::recv(fd_.get(), chunk, sizeof chunk, MSG_DONTWAIT)) > 0) buffer_.append(chunk, static_cast<size_t>(got));
    if (!buffer_.empty()) break;
    throw ControlClientError(Kind::kFailed, "lost the control connection to process " + std::to_string(pid_) + ": " +
                                                std::strerror(error));
  }
  for (;;) {
    size_t newline = buffer_.find('\n');
    if (newline != std::string::npos) {
      std::string reply = buffer_.substr(0, newline);
      buffer_.erase(0, newline + 1);
      return reply;
    }
    if (buffer_.size() > (64 << 20)) throw ControlClientError(Kind::kFailed, "reply too long");
    struct pollfd pfd {fd_.get(), POLLIN, 0};
    int ready = ::poll(&pfd, 1, remaining_ms(deadline));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0)
      throw ControlClientError(Kind::kFailed, "process " + std::to_string(pid_) + " did not answer within " +
                                                  std::to_string(timeout_.count()) + " ms");
    char chunk[16384];
    ssize_t n = ::recv(fd_.get(), chunk, sizeof chunk, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (!buffer_.empty()) {  // a last reply without '\n'
        std::string reply;
        reply.swap(buffer_);
        return reply;
      }
      throw ControlClientError(Kind::kFailed, "process " + std::to_string(pid_) + " closed the control connection" +
                                                  (n < 0 ? std::string(": ") + std::strerror(errno) : std::string()));
    }
    buffer_.append(chunk, static_cast<size_t>(n));
  }
}

JsonValue ControlClient::request(std::string_view line) {
  std::string raw = request_raw(line);
  auto reply = JsonValue::parse(raw);
  if (!reply || !reply->is_object())
    throw ControlClientError(Kind::kFailed, "process " + std::to_string(pid_) + " sent a reply that is not JSON");
  if (!reply->boolean("ok")) {
    std::string error = reply->str("error", "request failed");
    Kind kind = error.rfind("permission denied", 0) == 0 ? Kind::kPermissionDenied : Kind::kFailed;
    throw ControlClientError(kind, error);
  }
  return *reply;
}

}  // namespace emp::control
