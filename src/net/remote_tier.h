// RemoteTier: a `<host>:<MiB>:<port>` memory-path element — a lease of DRAM on a vmd,
// read and written through a DataPath (data_path.h): shared memory for a donor on this
// host, plain TCP sockets, or verbs RMA.
//
// Choosing the path: EMP_TRANSPORT=auto takes shm when the donor's host is this host
// and vmd's local control socket answers, else verbs when vmd offers it, else tcp; a
// named transport is used or refused with a clear error.
//
// Owns: the control-plane client, for verbs the libfabric domain and buffer
// registrations (kept for the tier's life, so they survive reconnects), the current
// data Link (path, shared with in-flight calls), and a supervisor thread
// ("emp-donor") that sends heartbeats and reconnects.
//
// Leasing: the lease is taken at start; when the donor is full then (typically: the
// program's own parent holds it, as a shell running a helper does), the tier keeps its
// authenticated control connection and asks again at its first write — most such
// programs never evict.
//
// Failure model. A broken channel or control connection triggers a reconnect that
// resumes the same lease (same memory) within vmd's grace period. If vmd no longer
// knows the lease (it restarted), the tier takes a fresh lease and records that the
// earlier data is lost: reads of anything written before the loss fail with EIO
// (never zeros), new writes work, health() is kDegraded. If no reconnect succeeds
// within the reconnect window, health() becomes kLost and every call fails with EIO;
// each case is logged once, naming the donor. Every wait is bounded.
//
// Thread-safety: read/write from any number of threads; register_buffer() may race
// with I/O. Lock order: state_mu_ -> (DataPath internals); loss_mu_ is a leaf.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/mem_path.h"
#include "net/channel.h"
#include "net/control_client.h"
#include "net/data_path.h"
#include "net/fabric.h"
#include "net/fabric_path.h"
#include "tier/tier.h"

namespace emp::net {

struct RemoteConfig {
  std::string key;                          // shared auth key ("" = none)
  std::optional<Provider> provider;         // default (auto): shm on this host, else verbs if offered, else tcp
  std::chrono::milliseconds connect_timeout{3000};
  std::chrono::milliseconds op_timeout{5000};        // one batch of RMA operations
  std::chrono::milliseconds reconnect_window{10000};  // then the donor is lost
  std::chrono::milliseconds heartbeat_interval{1000};
  ChannelOptions channel;                   // verbs
  unsigned read_connections = 2;            // tcp: connections for fault reads
};

class RemoteTier final : public tier::Tier {
 public:
  // Connects, authenticates and leases spec.size_bytes. Throws std::runtime_error whose
  // message names the element, e.g. "memory path element '127.0.0.1:4096:19675':
  // cannot connect to vmd at 127.0.0.1:19675: Connection refused".
  static std::unique_ptr<RemoteTier> connect(const TierSpec& spec, const RemoteConfig& config);
  ~RemoteTier() override;

  Status register_buffer(void* base, size_t length) noexcept override;
  tier::TierHealth health() const noexcept override { return health_.load(std::memory_order_acquire); }
  std::string describe() const override;
  std::optional<tier::DonorState> donor_state() const override;
  uint64_t data_epoch() const noexcept override;
  void abandon_in_child() noexcept override;
  // fork(): the parent attaches a control connection of the child's own to the lease
  // (and, for shm, the child's data path; tcp and verbs connect theirs at the child's
  // first I/O), so vmd keeps the lease while the child lives even if the parent exits;
  // the child adopts them and starts its own supervisor. Without a preparation (the
  // parent had nothing on this donor, or it was unreachable) the child attaches by
  // itself at its first I/O, which works while another holder keeps the lease.
  std::unique_ptr<ChildPreparation> prepare_child() noexcept override;
  std::unique_ptr<Tier> continue_in_child(std::unique_ptr<ChildPreparation> preparation) override;
  void forget(uint64_t offset, uint64_t length) noexcept override;
  // As one copy of a mirror: fail at once while the donor is unreachable (the mirror
  // reads another copy) instead of waiting up to the reconnect window for it.
  void set_fail_fast(bool fail_fast) noexcept { fail_fast_.store(fail_fast); }

  Provider provider() const noexcept { return provider_; }
  uint64_t lease_id() const;
  uint64_t reconnects() const noexcept { return reconnects_.load(); }
  bool data_lost() const noexcept { return data_lost_.load(); }
  // Test hook: breaks the data path as a network blip would (the control connection
  // stays open, so vmd sees no close).
  void drop_data_path_for_testing();

 protected:
  Status read_impl(std::span<const tier::IoSpan> spans) noexcept override;
  Status write_impl(std::span<const tier::IoSpan> spans) noexcept override;

 private:
  // One attachment to the lease; in-flight calls share it.
  struct Link {
    std::unique_ptr<DataPath> path;
    uint64_t data_epoch = 0;
    bool broken() const noexcept { return path->broken(); }
    void fail(Status why) noexcept { path->fail(why); }
  };

  struct DonorPreparation;  // prepare_child()'s attachment for the child

  RemoteTier(const TierSpec& spec, const RemoteConfig& config);
  void establish();  // first connection; throws
  void open_fabric(const std::string& peer);  // verbs: the libfabric domain and buffers; throws
  ControlConfig control_config() const;
  std::shared_ptr<Link> make_link(ControlClient& control, const protocol::LeaseGrant& grant);  // throws
  // Publishes a granted lease with its data link and control connection (state_mu_ held).
  void adopt_lease_locked(const protocol::LeaseGrant& grant, std::shared_ptr<Link> link,
                          std::unique_ptr<ControlClient> control);
  Status transfer(std::span<const tier::IoSpan> spans, bool is_read) noexcept;
  // The lease a full donor could not give at start, asked for at the first write.
  Status take_deferred_lease() noexcept;
  // Leases on control_ and attaches its data path (state_mu_ held); `how` ends the log
  // line. Throws ControlError or std::runtime_error.
  void lease_locked(const char* how);
  Status run_ops(Link& link, std::span<const tier::IoSpan> spans, bool is_read) noexcept;
  std::shared_ptr<Link> wait_for_link(Deadline deadline) noexcept;
  bool readable(std::span<const tier::IoSpan> spans) const noexcept;
  bool mark_written(const Link& link, std::span<const tier::IoSpan> spans) noexcept;
  void supervise() noexcept;
  void reconnect() noexcept;
  void declare_data_loss();

  const TierSpec spec_;
  const RemoteConfig config_;
  const std::string where_;  // "host:port"
  Provider provider_ = Provider::kTcp;
  std::unique_ptr<FabricBuffers> fabric_;  // verbs only

  mutable std::mutex state_mu_;
  std::condition_variable state_cv_;
  std::shared_ptr<Link> link_;
  std::unique_ptr<ControlClient> control_;  // used by the supervisor (and setup/teardown)
  ResumeTicket resume_{};
  bool reconnect_needed_ = false;
  bool stopping_ = false;
  std::atomic<tier::TierHealth> health_{tier::TierHealth::kHealthy};
  std::atomic<uint64_t> reconnects_{0};
  std::atomic<bool> fail_fast_{false};
  std::atomic<bool> leased_{false};  // false while the donor was full at start (deferred lease)
  // A forked child's tier: attach to the parent's lease at the first I/O (no
  // connection until then), or make the data path from a grant the parent got for it.
  std::atomic<bool> dormant_{false};
  std::atomic<bool> first_attach_{false};  // the next reconnect is that first attach, not a recovery
  std::optional<protocol::LeaseGrant> pending_grant_;  // state_mu_

  // Which 4 KiB granules hold data written in the current data epoch (consulted only
  // after a loss).
  mutable std::shared_mutex loss_mu_;
  std::atomic<bool> data_lost_{false};
  uint64_t data_epoch_ = 0;
  std::unique_ptr<std::atomic<uint64_t>[]> valid_;

  std::thread supervisor_;
};

}  // namespace emp::net
