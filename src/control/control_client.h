// ControlClient: the `emp` CLI's (and the tests') side of a control socket. connect()
// opens `<pid>.sock` (found with socket_location.h, or a given path), checks with
// SO_PEERCRED that the server really is that pid, and request() sends one line and
// reads one JSON line back, every wait bounded by the timeout. CLI zone: failures
// throw ControlClientError with a message fit for users and a kind the CLI maps to an
// exit status. Not thread-safe (one request at a time per client).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <stdexcept>
#include <string>
#include <string_view>

#include "common/unique_fd.h"
#include "control/json.h"

namespace emp::control {

struct ControlClientError : std::runtime_error {
  enum class Kind {
    kNotFound,          // no such process, or not an EMP process (no socket)
    kPermissionDenied,  // the socket or the server refused us
    kFailed,            // connection or protocol failure, timeout, error reply
  };
  ControlClientError(Kind error_kind, const std::string& message) : std::runtime_error(message), kind(error_kind) {}
  Kind kind;
};

class ControlClient {
 public:
  static constexpr std::chrono::milliseconds kDefaultTimeout{5000};

  // Finds and connects to the socket of `pid` (see candidate_directories()).
  static ControlClient connect_pid(pid_t pid, std::chrono::milliseconds timeout = kDefaultTimeout);
  // Connects to a socket path; when expected_pid > 0 the server must be that process.
  static ControlClient connect_path(const std::string& path, pid_t expected_pid,
                                    std::chrono::milliseconds timeout = kDefaultTimeout);

  // Sends `line` (no '\n' needed) and returns the raw reply line (without '\n').
  std::string request_raw(std::string_view line);
  // Sends `line` and parses the reply; an {"ok":false} reply throws kFailed (or
  // kPermissionDenied) with the server's error text.
  JsonValue request(std::string_view line);

  pid_t pid() const noexcept { return pid_; }
  const std::string& path() const noexcept { return path_; }

 private:
  ControlClient(UniqueFd fd, std::string path, pid_t pid, std::chrono::milliseconds timeout)
      : fd_(std::move(fd)), path_(std::move(path)), pid_(pid), timeout_(timeout) {}

  UniqueFd fd_;
  std::string path_;
  pid_t pid_;
  std::chrono::milliseconds timeout_;
  std::string buffer_;  // bytes read past the last reply
};

}  // namespace emp::control
