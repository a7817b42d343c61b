// ControlClient: the client half of the control plane (protocol.h) on one connection
// to a vmd — TCP, or vmd's local control socket for a donor on this host (which also
// passes the lease's memory file with the grant): Hello, mutual challenge-response authentication, lease (new or
// resumed), heartbeat, release. Setup calls throw ControlError (with an errno-style
// code and a message fit for users); heartbeat()/release() return Status. Every wait
// is bounded by the configured timeout. Thread-safe (one internal mutex).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>

#include "common/status.h"
#include "common/unique_fd.h"
#include "net/fabric.h"
#include "net/protocol.h"
#include "net/socket.h"

namespace emp::net {

struct ControlError : std::runtime_error {
  ControlError(int error_code, const std::string& message) : std::runtime_error(message), code(error_code) {}
  int code;
};

struct ControlConfig {
  std::string host;
  uint16_t port = 19675;
  std::string key;  // empty: no authentication
  std::chrono::milliseconds timeout{5000};
  bool local = false;  // vmd's same-host socket for `port` (socket.h local_control_name)
};

struct ResumeTicket {
  uint64_t lease_id = 0;
  uint8_t token[protocol::kTokenBytes] = {};
};

class ControlClient {
 public:
  // Connects and authenticates. Throws ControlError: ECONNREFUSED/ETIMEDOUT/... for the
  // connection ("cannot connect to vmd at H:P: Connection refused"), EACCES for
  // authentication, EPROTO for a peer that does not speak the protocol.
  static std::unique_ptr<ControlClient> connect(const ControlConfig& config);
  // Fuzzing and tests: the same handshake over an already-connected stream.
  static std::unique_ptr<ControlClient> connect_for_testing(UniqueFd fd, const ControlConfig& config);

  const protocol::Hello& hello() const noexcept { return hello_; }
  bool offers(Provider provider) const noexcept {
    return (hello_.providers & static_cast<uint16_t>(to_wire(provider))) != 0;
  }
  // The numeric address the control connection reached (used for the data plane).
  const std::string& peer() const noexcept { return peer_; }
  std::string where() const { return config_.host + ":" + std::to_string(config_.port); }

  // Leases `size` bytes for `provider`, or resumes `resume`; waits at least 10 s plus
  // 2 s per GiB (vmd allocates the memory before it answers). Throws ControlError
  // (ENOENT: the lease to resume is unknown; ENOSPC: the donor is full; ...).
  protocol::LeaseGrant lease(uint64_t size, Provider provider, const std::optional<ResumeTicket>& resume);
  Status heartbeat(const protocol::Heartbeat& beat) noexcept;
  Status release(uint64_t lease_id) noexcept;
  // In a forked child: closes this process's copy of the connection (no traffic).
  void abandon() noexcept { fd_.reset(); }
  // The memory file vmd passed with the last grant (local connections, shm leases).
  UniqueFd take_passed_fd() noexcept;

 private:
  ControlClient() = default;
  void greet(Deadline deadline);  // Hello, then the authentication exchange; throws ControlError
  // Sends a request and reads one reply frame (header + payload).
  Status exchange(const std::vector<uint8_t>& request, protocol::FrameHeader* header, std::vector<uint8_t>* payload,
                  std::chrono::milliseconds timeout) noexcept;
  [[noreturn]] void throw_reply_error(const protocol::FrameHeader& header, const std::vector<uint8_t>& payload,
                                      const char* expecting) const;

  ControlConfig config_;
  UniqueFd fd_;
  std::string peer_;
  UniqueFd passed_fd_;
  protocol::Hello hello_{};
  uint32_t sequence_ = 0;
  std::mutex mu_;
};

}  // namespace emp::net
