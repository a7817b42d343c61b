// ControlServer: the control socket of one EMP process (served by libemp.so and any
// other Engine owner). One thread, "emp-control", polls the listening unix socket, its
// clients and a stop eventfd; it is joined by the destructor, which also unlinks the
// socket. Location and permissions follow socket_location.h; a peer whose uid is
// neither ours nor root gets an error reply and is disconnected.
//
// Protocol: the client sends one request line (at most kMaxRequestBytes, '\n'
// terminated; several may follow on one connection) and receives one JSON object per
// line: {"ok":true,...} or {"ok":false,"error":"..."}. Requests:
//   info             pid, uid, program, command line, memory path, dram mode, budget,
//                    resident, managed, block sizes, tiers
//   stats            {"ok":true,"pid":..,"dram":{..},"stats":<EngineStats::to_json()>}
//   resize <bytes>   Engine::set_budget; replies the budget now in force. If dram:auto
//                    was steering, it is switched off (the reply has a "note").
//   resize auto      switches dram:auto back on (only when the process has it)
//   donors           every second-tier element: kind, health, capacity, counters; for
//                    remote donors also the lease, the provider and reconnects
//   help             the list above
// Malformed or unknown requests get an error reply, never a crash. A client idle for
// kClientTimeout is disconnected, so a slow client cannot hold the server; at most
// kMaxClients are served at once (more get a "busy" error).
//
// Zones: start() is setup (throws std::runtime_error / std::system_error naming the
// path; libemp.so should log that and run without a socket). Everything after runs in
// the host application's process: noexcept, no signals (MSG_NOSIGNAL), never throws.
// handle() is thread-safe.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "common/unique_fd.h"

namespace emp::core {
class Engine;
}

namespace emp::control {

class DramAutoController;

struct ControlInfo {
  std::string program;       // e.g. "redis-server" (basename of argv[0] or /proc/self/comm)
  std::string command_line;  // the whole command line, arguments separated by spaces
  std::string mem_path;      // the memory path as the user wrote it
  bool dram_auto = false;    // dram:auto / dram:-1 was requested
  // The running dram:auto controller, if any (not owned; must outlive the server).
  // `resize <bytes>` switches it off, `resize auto` on again.
  DramAutoController* dram_auto_controller = nullptr;
  // "" (default): the rules of socket_location.h. Tests may point elsewhere.
  std::string socket_directory;
};

class ControlServer {
 public:
  static constexpr size_t kMaxRequestBytes = 1024;
  static constexpr size_t kMaxClients = 16;
  static constexpr std::chrono::milliseconds kClientTimeout{5000};

  static std::unique_ptr<ControlServer> start(core::Engine& engine, ControlInfo info);
  ~ControlServer();
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  const std::string& socket_path() const noexcept { return path_; }
  // Removes the socket file if this process created it (not a vfork child sharing the
  // object): for exits that run no destructor (_exit).
  void unlink_if_owner() const noexcept;
  // Answers one request line (without its '\n'); what the thread sends back.
  std::string handle(std::string_view request) noexcept;

 private:
  ControlServer(core::Engine& engine, ControlInfo info);
  void run() noexcept;
  std::string info_reply();
  std::string stats_reply();
  std::string resize_reply(std::string_view argument);
  std::string donors_reply();
  std::string dram_json() const;

  core::Engine& engine_;
  ControlInfo info_;
  std::string path_;
  pid_t owner_pid_ = 0;
  uid_t uid_ = 0;
  std::chrono::system_clock::time_point started_;
  UniqueFd listen_fd_;
  UniqueFd stop_fd_;
  std::thread thread_;
};

}  // namespace emp::control
