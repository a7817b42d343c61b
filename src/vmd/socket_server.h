// SocketServer: vmd's tcp data plane (protocol.h, "socket data plane"). It listens on
// its own port (announced in each LeaseGrant) and serves every data connection on a
// thread of its own ("vmd-data"), blocked in recv while the client is quiet — so
// serving threads scale with clients, and an idle vmd uses no CPU. A connection first
// presents its lease id and ticket; only a ticket the daemon allow()ed reaches that
// lease's memory, and every request is bounds-checked against that lease (a bad one
// gets an error reply and the connection closes). Write replies are coalesced while
// more requests wait in the socket, so a write-back batch costs vmd one reply send.
//
// Threads: the daemon's main loop calls allow()/disconnect(); an accept thread
// ("vmd-data-accept") and the connection threads run inside. Lock order: mu_ only
// (never held across socket I/O). A lease's memory is held by shared_ptr in each
// connection serving it, so it outlives the last request touching it.
#pragma once

#include <atomic>
#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "common/unique_fd.h"
#include "net/protocol.h"
#include "vmd/lease_memory.h"

namespace emp::vmd {

class SocketServer {
 public:
  // Listens on bind_address (""= any) with an ephemeral port. Throws.
  explicit SocketServer(const std::string& bind_address);
  ~SocketServer();  // shuts every connection down and joins every thread
  SocketServer(const SocketServer&) = delete;
  SocketServer& operator=(const SocketServer&) = delete;

  uint16_t port() const noexcept { return port_; }
  // Data connections presenting (lease_id, ticket) may reach `memory`, until the
  // session `cookie` is disconnected. Replaces an earlier ticket of that session (a
  // lease has one ticket per session holding it).
  void allow(uint64_t lease_id, const uint8_t (&ticket)[net::protocol::kTokenBytes], uint64_t cookie,
             std::shared_ptr<LeaseMemory> memory);
  // Revokes the session's tickets and shuts its connections down.
  void disconnect(uint64_t cookie) noexcept;
  size_t connection_count() const noexcept;
  // Fuzzing and tests: serves one already-connected stream on the calling thread, as a
  // data connection, until it ends.
  void serve_for_testing(UniqueFd fd) noexcept;
  uint64_t rejected_total() const noexcept { return rejected_.load(std::memory_order_relaxed); }

 private:
  struct Grant {
    uint64_t lease_id;
    uint8_t ticket[net::protocol::kTokenBytes];
    std::shared_ptr<LeaseMemory> memory;
  };
  struct Connection {
    UniqueFd fd;
    uint64_t cookie = 0;  // 0 until admitted
    std::thread thread;
    std::atomic<bool> done{false};
  };
  void accept_loop() noexcept;
  void serve(Connection& connection) noexcept;
  // Reads the DataConnect and checks its ticket; returns the lease memory or null.
  std::shared_ptr<LeaseMemory> admit(Connection& connection) noexcept;
  void reap_locked() noexcept;  // joins finished connection threads

  UniqueFd listen_fd_;
  UniqueFd stop_fd_;
  uint16_t port_ = 0;
  mutable std::mutex mu_;
  std::map<uint64_t, Grant> grants_;  // by session cookie
  std::list<Connection> connections_;
  std::atomic<uint64_t> rejected_{0};
  std::thread acceptor_;
};

}  // namespace emp::vmd
