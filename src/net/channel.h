// Channel: one client endpoint to a donor's exported memory over libfabric (a
// connected FI_EP_MSG endpoint: verbs, or libfabric's tcp provider as a benchmark
// candidate). It posts one-sided fi_read/fi_write straight into the caller's
// (registered) buffers.
//
// Thread-safety and waiting: any number of threads may call read()/write() at once;
// each posts its whole batch, then waits for it. One waiting thread at a time is the
// "poller": it reads the completion queue and hands every completion to its owner's
// batch (leader/follower); it spins for a bounded few tens of microseconds and then
// sleeps with fi_trywait + poll on the CQ's wait fd, so no thread ever busy-waits.
// Every wait has a deadline. A timeout, an error completion or a peer shutdown breaks
// the channel: the endpoint is closed at once (so no late completion can land in a
// buffer its caller has already reused), every pending call fails, and the owner makes
// a new Channel. Lock order: mu_ only (never held while sleeping in poll).
#pragma once

#include <rdma/fabric.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_eq.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/unique_fd.h"
#include "net/fabric.h"
#include "net/socket.h"

namespace emp::net {

struct RmaOp {
  void* local;          // registered local buffer
  size_t length;
  void* desc;           // its registration descriptor (may be null if not required)
  uint64_t remote;      // remote address (virtual or offset, per the domain's mode)
};

struct ChannelOptions {
  // Bounded spin before sleeping; unset = per provider (tcp: 0, since spinning on its
  // queue competes with the provider's own progress thread; verbs: 50 us).
  std::optional<std::chrono::microseconds> spin;
  unsigned max_inflight = 256;
};

class Channel {
 public:
  // Connected providers: connects to node:port, sending `private_data` with the
  // request. Throws std::runtime_error ("connection refused", "timed out", ...).
  static std::unique_ptr<Channel> connect(Domain& domain, const std::string& node, uint16_t port,
                                          std::span<const uint8_t> private_data, Deadline deadline,
                                          const ChannelOptions& options = {});
  ~Channel();
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;

  Status read(std::span<const RmaOp> ops, uint64_t key, Deadline deadline) noexcept;
  Status write(std::span<const RmaOp> ops, uint64_t key, Deadline deadline) noexcept;

  // Breaks the channel (idempotent): closes the endpoint, fails every pending call.
  void fail(Status why) noexcept;
  bool broken() const noexcept { return broken_.load(std::memory_order_acquire); }
  Status failure() const noexcept;
  Domain& domain() const noexcept { return domain_; }

 private:
  struct Batch {
    uint32_t pending = 0;
    std::atomic<uint64_t> completed{0};
    int error = 0;
  };
  struct OpSlot {
    fi_context2 context;  // first: the op context pointer is the slot pointer
    Batch* batch = nullptr;
  };

  Channel(Domain& domain, const ChannelOptions& options);
  void open_queues(bool with_eq);  // throws
  Status run(std::span<const RmaOp> ops, uint64_t key, bool is_read, Deadline deadline) noexcept;
  // Poller role: returns when `batch` advanced, the channel broke, or the deadline passed.
  void poll_for(Batch& batch, uint64_t seen, bool retry_post, Deadline deadline) noexcept;
  ssize_t post_write(const RmaOp& op, uint64_t key, void* context) noexcept;  // mu_ held
  int drain() noexcept;  // reads the CQ and dispatches; returns entries handled
  void check_events() noexcept;  // EQ: FI_SHUTDOWN breaks the channel
  void complete_locked(OpSlot* slot, int error) noexcept;
  void orphan_locked(Batch& batch) noexcept;
  void fail_locked(Status why) noexcept;
  void close_endpoint_locked() noexcept;

  Domain& domain_;
  ChannelOptions options_;
  std::chrono::microseconds spin_{0};
  fid_ep* ep_ = nullptr;
  fid_cq* cq_ = nullptr;
  fid_eq* eq_ = nullptr;
  fi_addr_t peer_ = FI_ADDR_UNSPEC;
  int cq_fd_ = -1;
  int eq_fd_ = -1;
  UniqueFd wake_fd_;  // eventfd: fail() wakes a poller sleeping in poll()

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool poller_active_ = false;
  bool delivery_complete_ = true;
  std::atomic<bool> broken_{false};
  Status failure_;
  std::unique_ptr<OpSlot[]> slots_;
  std::vector<uint32_t> free_;
};

}  // namespace emp::net
