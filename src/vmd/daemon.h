// Daemon: vmd's composition root and event loop. It owns the locked pool, the lease
// table, the data planes — the SocketServer (tcp), the libfabric Exporter (verbs, when
// -d names an RDMA device) and, for clients on this host, the lease's memory file
// passed over the local control socket (shm) — and every client's control session.
//
// One thread (run()) handles everything on the control plane with poll(): the TCP and
// local control listeners, the lease worker's completions (lease memory is made and
// freed on its own thread, lease_worker.h), each session's non-blocking socket (frames reassembled in a
// bounded buffer and validated by protocol.h before use), the verbs connection-manager
// queue, the metrics listener, a signalfd (SIGTERM/SIGINT) and timers (authentication
// deadlines, idle sessions, lease grace periods). The data servers' threads are the
// only others. Malformed input earns an Error reply and a closed session; it never
// reaches anything but the parser.
//
// Leases: each its own memory file (LeaseMemory) standing in for its extent of the
// pool, held by one or more sessions. A session holds at most one lease; a client
// presenting a lease's id and resume token attaches it (same memory, same key) — to
// come back after a reconnect, or as a forked child of the holder, which attaches
// before the fork so the lease outlives its parent (docs/protocol.md). A lease whose
// last holder's client closed the connection (process exit, kill, exec) is freed at
// once; one whose last holder broke or went silent stays orphaned for the grace
// period. A released or expired lease loses every data connection and registration,
// and its memory file is freed (a new lease always starts zeroed).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/unique_fd.h"
#include "net/exporter.h"
#include "net/protocol.h"
#include "vmd/config.h"
#include "vmd/lease_memory.h"
#include "vmd/lease_worker.h"
#include "vmd/pool_memory.h"
#include "vmd/socket_server.h"

namespace emp::vmd {

using Clock = std::chrono::steady_clock;

struct Counters {
  uint64_t connections_total = 0;
  uint64_t auth_failures_total = 0;
  uint64_t protocol_errors_total = 0;
  uint64_t rejected_clients_total = 0;
  uint64_t leases_granted_total = 0;
  uint64_t leases_resumed_total = 0;
  uint64_t leases_expired_total = 0;
  uint64_t leases_released_total = 0;
  uint64_t data_connections_rejected_total = 0;
  uint64_t bytes_read_total = 0;  // as reported by clients' heartbeats
  uint64_t bytes_written_total = 0;
  uint64_t read_ops_total = 0;
  uint64_t write_ops_total = 0;
};

class Daemon {
 public:
  // Allocates and locks the pool, opens the data plane and the listeners. Throws.
  // Blocks SIGTERM/SIGINT in the calling thread (do it before starting other threads).
  explicit Daemon(const VmdConfig& config);
  ~Daemon();
  // Serves until SIGTERM/SIGINT. Returns the exit code.
  int run();
  uint16_t control_port() const noexcept;
  // Fuzzing and tests: runs `bytes` through a fresh authenticated-or-not session as if
  // a client had sent them (replies are discarded), then closes that session.
  void feed_for_testing(std::span<const uint8_t> bytes, bool local = false);

 private:
  struct Lease {
    uint64_t id = 0;
    uint64_t offset = 0;
    uint64_t size = 0;
    net::Provider provider = net::Provider::kTcp;
    uint8_t resume_token[net::protocol::kTokenBytes] = {};
    std::shared_ptr<LeaseMemory> memory;
    net::MemoryRegion registration;  // verbs
    // The sessions holding it, each with its own data-connection ticket; none = orphaned.
    struct Ticket {
      uint8_t bytes[net::protocol::kTokenBytes] = {};
    };
    std::map<uint64_t, Ticket> holders;
    Clock::time_point expires{};  // while orphaned
  };
  enum class SessionState { kAwaitAuth, kReady };
  struct Session {
    uint64_t id = 0;
    UniqueFd fd;
    std::string peer;
    bool local = false;  // came through the local control socket (may take shm leases)
    uint64_t pending_lease = 0;  // a lease whose memory the worker is making
    SessionState state = SessionState::kAwaitAuth;
    uint8_t server_nonce[net::protocol::kNonceBytes] = {};
    std::vector<uint8_t> input;
    uint64_t lease = 0;
    Clock::time_point deadline{};  // authentication deadline, then idle deadline
    // Last cumulative counters the client reported, to add only the increase.
    uint64_t reported[4] = {};
  };

  void accept_clients(int listen_fd, bool local);
  uint16_t providers_for(const Session& session) const noexcept;
  void serve_metrics();
  void read_session(Session& session);
  // Appends received bytes and handles every complete frame; false when the session
  // was closed (protocol error or refusal).
  bool consume(Session& session, std::span<const uint8_t> bytes);
  // Handles one complete frame; returns false when the session must close.
  bool handle_frame(Session& session, const net::protocol::FrameHeader& header, std::span<const uint8_t> payload);
  bool handle_auth(Session& session, const net::protocol::Auth& auth, uint32_t sequence);
  bool handle_lease(Session& session, const net::protocol::LeaseRequest& request, uint32_t sequence);
  // Grants `lease` (new, resumed or attached by another process) to `session` as one
  // more holder: its ticket, data-plane access, the reply.
  bool grant_lease(Session& session, Lease& lease, bool resumed, uint32_t sequence);
  void finish_leases();  // the lease worker's completed creations
  // Error reply, then the session closes (returns false) / stays open (returns true).
  bool reject(Session& session, int code, const std::string& text, uint32_t sequence = 0);
  bool refuse(Session& session, int code, const std::string& text, uint32_t sequence);
  bool send(Session& session, const std::vector<uint8_t>& bytes, int pass_fd = -1);
  // How a session ended: its client closed the connection (the process exited, was
  // killed or exec'd: the lease is freed at once), or the connection broke or went
  // silent (the lease is kept for --grace so the client can resume it).
  enum class SessionEnd { kClientGone, kBroken };
  void close_session(uint64_t id, const char* why, SessionEnd end = SessionEnd::kBroken);
  void disconnect_data(uint64_t session) noexcept;
  // `session` stops holding `lease` (its data connections close); the last holder
  // leaving orphans the lease until `expires`.
  void drop_holder(Lease& lease, uint64_t session);
  std::string describe_data_planes() const;
  void free_lease(uint64_t id, const char* why);
  void expire_timers();
  uint64_t admit_data_connection(std::span<const uint8_t> private_data);
  std::string metrics_text() const;

  VmdConfig config_;
  std::string key_;
  PoolMemory pool_;
  ExtentAllocator extents_;
  std::unique_ptr<LeaseWorker> lease_worker_;  // after pool_: it uses the pool
  std::unique_ptr<SocketServer> socket_server_;
  std::unique_ptr<net::Exporter> exporter_;  // verbs only
  UniqueFd listen_fd_;
  UniqueFd local_listen_fd_;  // same-host clients (shm); invalid with --no-shm
  UniqueFd metrics_fd_;
  UniqueFd signal_fd_;
  std::map<uint64_t, Session> sessions_;
  std::map<uint64_t, Lease> leases_;
  struct PendingLease {
    uint64_t session = 0;
    uint32_t sequence = 0;
    Lease lease;
  };
  std::map<uint64_t, PendingLease> pending_leases_;  // by lease id, until the worker is done
  uint64_t next_session_ = 1;
  uint64_t next_lease_ = 1;
  uint64_t instance_ = 0;  // random per start: lease ids never repeat across restarts
  Counters counters_;
};

}  // namespace emp::vmd
