#include "net/channel.h"

#include <poll.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>
#include <sys/eventfd.h>

#include <stdexcept>

#include "common/log.h"

namespace emp::net {
namespace {

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

int to_errno(int fi_code) noexcept {
  if (fi_code < 0) fi_code = -fi_code;
  if (fi_code == 0) return EIO;
  if (fi_code < 256) return fi_code;  // libfabric reuses errno values below 256
  return EIO;
}

}  // namespace

Channel::Channel(Domain& domain, const ChannelOptions& options) : domain_(domain), options_(options) {
  size_t tx = domain.info()->tx_attr ? domain.info()->tx_attr->size : 0;
  if (tx && options_.max_inflight > tx) options_.max_inflight = static_cast<unsigned>(tx);
  if (options_.max_inflight == 0) options_.max_inflight = 1;
  spin_ = options_.spin ? *options_.spin
                        : std::chrono::microseconds(domain.provider() == Provider::kTcp ? 0 : 50);
  slots_ = std::make_unique<OpSlot[]>(options_.max_inflight);
  free_.reserve(options_.max_inflight);
  for (uint32_t i = options_.max_inflight; i-- > 0;) free_.push_back(i);
  wake_fd_ = UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake_fd_.valid()) throw std::runtime_error(std::string("eventfd: ") + std::strerror(errno));
}

void Channel::open_queues(bool with_eq) {
  fi_cq_attr cq_attr{};
  cq_attr.format = FI_CQ_FORMAT_CONTEXT;
  cq_attr.size = options_.max_inflight * 2;
  cq_attr.wait_obj = FI_WAIT_FD;
  int rc = fi_cq_open(domain_.domain(), &cq_attr, &cq_, nullptr);
  if (rc == -FI_ENOSYS || rc == -FI_EINVAL) {  // provider without fd waiting: bounded sleeps instead
    cq_attr.wait_obj = FI_WAIT_NONE;
    rc = fi_cq_open(domain_.domain(), &cq_attr, &cq_, nullptr);
  } else if (rc == 0 && fi_control(&cq_->fid, FI_GETWAIT, &cq_fd_) != 0) {
    cq_fd_ = -1;
  }
  if (rc) throw std::runtime_error("fi_cq_open: " + fabric_error(rc));
  if (with_eq) {
    fi_eq_attr eq_attr{};
    eq_attr.size = 16;
    eq_attr.wait_obj = FI_WAIT_FD;
    rc = fi_eq_open(domain_.fabric(), &eq_attr, &eq_, nullptr);
    if (rc) throw std::runtime_error("fi_eq_open: " + fabric_error(rc));
    if (fi_control(&eq_->fid, FI_GETWAIT, &eq_fd_) != 0) eq_fd_ = -1;
  }
}

std::unique_ptr<Channel> Channel::connect(Domain& domain, const std::string& node, uint16_t port,
                                          std::span<const uint8_t> private_data, Deadline deadline,
                                          const ChannelOptions& options) {
  std::unique_ptr<Channel> channel(new Channel(domain, options));
  fi_info* info = domain.destination_info(node, port);
  struct InfoGuard {
    fi_info* info;
    ~InfoGuard() { fi_freeinfo(info); }
  } guard{info};
  channel->open_queues(/*with_eq=*/true);
  int rc = fi_endpoint(domain.domain(), info, &channel->ep_, nullptr);
  if (rc) throw std::runtime_error("fi_endpoint: " + fabric_error(rc));
  if ((rc = fi_ep_bind(channel->ep_, &channel->eq_->fid, 0)) ||
      (rc = fi_ep_bind(channel->ep_, &channel->cq_->fid, FI_TRANSMIT | FI_RECV)) || (rc = fi_enable(channel->ep_)))
    throw std::runtime_error("endpoint setup: " + fabric_error(rc));
  rc = fi_connect(channel->ep_, info->dest_addr, private_data.data(), private_data.size());
  if (rc) throw std::runtime_error("fi_connect: " + fabric_error(rc));
  while (true) {
    uint32_t event = 0;
    alignas(fi_eq_cm_entry) uint8_t buffer[sizeof(fi_eq_cm_entry) + 256] = {};
    int wait = remaining_ms(deadline);
    ssize_t n = fi_eq_sread(channel->eq_, &event, buffer, sizeof buffer, wait > 0 ? wait : 1, 0);
    if (n == -FI_EAVAIL) {
      fi_eq_err_entry err{};
      fi_eq_readerr(channel->eq_, &err, 0);
      int code = err.err ? err.err : FI_ECONNREFUSED;
      throw std::runtime_error(code == FI_ECONNREFUSED ? std::string("data connection refused by vmd")
                                                       : "data connection failed: " + fabric_error(code));
    }
    if (n == -FI_EAGAIN || n == -FI_ETIMEDOUT) {
      if (remaining_ms(deadline) > 0) continue;
      throw std::runtime_error("data connection timed out");
    }
    if (n < 0) throw std::runtime_error("data connection failed: " + fabric_error(static_cast<int>(n)));
    if (event == FI_CONNECTED) break;
    if (event == FI_SHUTDOWN) throw std::runtime_error("data connection closed by vmd during set-up");
  }
  return channel;
}

Channel::~Channel() {
  {
    std::lock_guard lock(mu_);
    close_endpoint_locked();
  }
  if (cq_) fi_close(&cq_->fid);
  if (eq_) fi_close(&eq_->fid);
}

void Channel::close_endpoint_locked() noexcept {
  if (ep_) {
    fi_close(&ep_->fid);
    ep_ = nullptr;
  }
}

Status Channel::failure() const noexcept {
  std::lock_guard lock(mu_);
  return failure_;
}

void Channel::fail(Status why) noexcept {
  std::lock_guard lock(mu_);
  fail_locked(why);
}

void Channel::fail_locked(Status why) noexcept {
  if (broken_.load(std::memory_order_relaxed)) return;
  failure_ = why.is_ok() ? Status::error(ECONNRESET, "data channel closed") : why;
  broken_.store(true, std::memory_order_release);
  close_endpoint_locked();
  uint64_t one = 1;
  (void)!::write(wake_fd_.get(), &one, sizeof one);
  cv_.notify_all();
}

void Channel::complete_locked(OpSlot* slot, int error) noexcept {
  Batch* batch = slot->batch;
  slot->batch = nullptr;
  free_.push_back(static_cast<uint32_t>(slot - slots_.get()));
  if (batch) {
    if (error && !batch->error) batch->error = error;
    --batch->pending;
    batch->completed.fetch_add(1, std::memory_order_release);
  }
}

void Channel::orphan_locked(Batch& batch) noexcept {
  for (unsigned i = 0; i < options_.max_inflight; ++i)
    if (slots_[i].batch == &batch) slots_[i].batch = nullptr;  // reclaimed if its completion ever comes
  batch.pending = 0;
}

int Channel::drain() noexcept {
  fi_cq_entry entries[32];
  ssize_t n = fi_cq_read(cq_, entries, 32);
  if (n > 0) {
    std::lock_guard lock(mu_);
    for (ssize_t i = 0; i < n; ++i) complete_locked(static_cast<OpSlot*>(entries[i].op_context), 0);
    cv_.notify_all();
    return static_cast<int>(n);
  }
  if (n == -FI_EAGAIN) return 0;
  if (n == -FI_EAVAIL) {
    fi_cq_err_entry err{};
    if (fi_cq_readerr(cq_, &err, 0) > 0) {
      std::lock_guard lock(mu_);
      int code = to_errno(err.err);
      if (err.op_context) complete_locked(static_cast<OpSlot*>(err.op_context), code);
      EMP_DEBUG("net", "RMA completion error: %s", fabric_error(err.err).c_str());
      fail_locked(Status::error(code, "RMA operation failed at the donor"));
      return 1;
    }
    return 0;
  }
  fail(Status::error(to_errno(static_cast<int>(n)), "completion queue failed"));
  return -1;
}

void Channel::check_events() noexcept {
  if (!eq_) return;
  uint32_t event = 0;
  alignas(fi_eq_cm_entry) uint8_t buffer[sizeof(fi_eq_cm_entry) + 256] = {};
  ssize_t n = fi_eq_read(eq_, &event, buffer, sizeof buffer, 0);
  if (n == -FI_EAVAIL) {
    fi_eq_err_entry err{};
    fi_eq_readerr(eq_, &err, 0);
    fail(Status::error(ECONNRESET, "data connection error"));
  } else if (n >= 0 && event == FI_SHUTDOWN) {
    fail(Status::error(ECONNRESET, "data connection closed by the donor"));
  }
}

void Channel::poll_for(Batch& batch, uint64_t seen, bool retry_post, Deadline deadline) noexcept {
  auto spin_until = Clock::now() + spin_;
  while (true) {
    int handled = drain();
    // Any dispatch may have finished our batch or freed the slots we wait for.
    if (handled != 0 || batch.completed.load(std::memory_order_acquire) != seen || broken()) return;
    if (retry_post) {  // the provider said EAGAIN: one progress round, then post again
      struct timespec ts {0, 2'000};
      ::nanosleep(&ts, nullptr);
      return;
    }
    auto now = Clock::now();
    if (now < spin_until) {
      cpu_relax();
      continue;
    }
    if (now >= deadline) return;
    int timeout = std::min(remaining_ms(deadline) + 1, 100);
    if (cq_fd_ < 0) {
      // No wait object: sleep briefly (bounded cost, never a hot spin).
      struct timespec ts {0, 50'000};
      ::nanosleep(&ts, nullptr);
      check_events();
      continue;
    }
    fid* fids[2] = {&cq_->fid, eq_ ? &eq_->fid : nullptr};
    if (fi_trywait(domain_.fabric(), fids, eq_ ? 2 : 1) == FI_SUCCESS) {
      pollfd pfds[3] = {{cq_fd_, POLLIN, 0}, {wake_fd_.get(), POLLIN, 0}, {eq_fd_, POLLIN, 0}};
      ::poll(pfds, eq_fd_ >= 0 ? 3 : 2, timeout);
    }
    check_events();
  }
}

Status Channel::run(std::span<const RmaOp> ops, uint64_t key, bool is_read, Deadline deadline) noexcept {
  Batch batch;
  size_t next = 0;
  std::unique_lock lock(mu_);
  while (true) {
    if (broken()) {
      orphan_locked(batch);
      return batch.error ? Status::error(batch.error, "RMA operation failed at the donor") : failure_;
    }
    while (next < ops.size() && !batch.error && !free_.empty()) {
      uint32_t index = free_.back();
      free_.pop_back();
      OpSlot* slot = &slots_[index];
      slot->batch = &batch;
      const RmaOp& op = ops[next];
      ssize_t rc = is_read ? fi_read(ep_, op.local, op.length, op.desc, peer_, op.remote, key, &slot->context)
                           : post_write(op, key, &slot->context);
      if (rc == 0) {
        ++batch.pending;
        ++next;
        continue;
      }
      slot->batch = nullptr;
      free_.push_back(index);
      if (rc == -FI_EAGAIN) break;
      batch.error = to_errno(static_cast<int>(rc));
      EMP_DEBUG("net", "posting RMA failed: %s", fabric_error(static_cast<int>(rc)).c_str());
    }
    if (batch.pending == 0 && (next == ops.size() || batch.error)) break;
    uint64_t seen = batch.completed.load(std::memory_order_relaxed);
    if (!poller_active_) {
      poller_active_ = true;
      const bool retry_post = batch.pending == 0 && next < ops.size() && !free_.empty();  // free_ needs mu_
      lock.unlock();
      poll_for(batch, seen, retry_post, deadline);
      lock.lock();
      poller_active_ = false;
      cv_.notify_all();
    } else {
      cv_.wait_until(lock, deadline, [&] {
        return batch.completed.load(std::memory_order_relaxed) != seen || broken() || !poller_active_ ||
               (next < ops.size() && !free_.empty());
      });
    }
    if (broken()) continue;
    if (batch.pending == 0 && (next == ops.size() || batch.error)) break;
    if (Clock::now() >= deadline) {
      EMP_WARN("net", "RMA batch timed out with %u operations in flight; closing the data channel", batch.pending);
      fail_locked(Status::error(ETIMEDOUT, "RMA operation timed out"));
      orphan_locked(batch);
      return Status::error(ETIMEDOUT, "RMA operation timed out");
    }
  }
  if (batch.error) return Status::error(batch.error, is_read ? "RMA read failed" : "RMA write failed");
  return Status::ok();
}

ssize_t Channel::post_write(const RmaOp& op, uint64_t key, void* context) noexcept {
  // A write completes only once the donor holds the data (delivery complete), so a
  // write that returned ok survives a connection loss. Providers that cannot promise
  // more than their native remote acknowledgement (verbs) refuse the flag; then the
  // plain write (acknowledged by the remote adapter) is used.
  if (delivery_complete_) {
    iovec iov{op.local, op.length};
    void* desc = op.desc;
    fi_rma_iov rma{op.remote, op.length, key};
    fi_msg_rma msg{&iov, &desc, 1, peer_, &rma, 1, context, 0};
    ssize_t rc = fi_writemsg(ep_, &msg, FI_COMPLETION | FI_DELIVERY_COMPLETE);
    if (rc != -FI_EBADFLAGS && rc != -FI_ENOSYS && rc != -FI_EOPNOTSUPP) return rc;
    EMP_INFO("net", "%s cannot report delivery completion; using remote acknowledgement", to_string(domain_.provider()));
    delivery_complete_ = false;
  }
  return fi_write(ep_, op.local, op.length, op.desc, peer_, op.remote, key, context);
}

Status Channel::read(std::span<const RmaOp> ops, uint64_t key, Deadline deadline) noexcept {
  return run(ops, key, /*is_read=*/true, deadline);
}

Status Channel::write(std::span<const RmaOp> ops, uint64_t key, Deadline deadline) noexcept {
  return run(ops, key, /*is_read=*/false, deadline);
}

}  // namespace emp::net
