#include "net/remote_tier.h"

#include <pthread.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "common/log.h"
#include "net/shm_path.h"
#include "net/socket_path.h"

namespace emp::net {
namespace {

constexpr size_t kGranule = 4096;

std::string where_of(const TierSpec& spec) {
  bool v6 = spec.location.find(':') != std::string::npos;
  return (v6 ? "[" + spec.location + "]" : spec.location) + ":" + std::to_string(spec.port);
}

}  // namespace

RemoteTier::RemoteTier(const TierSpec& spec, const RemoteConfig& config)
    : Tier("vmd " + where_of(spec), spec.size_bytes), spec_(spec), config_(config), where_(where_of(spec)) {
  size_t words = (spec.size_bytes / kGranule + 63) / 64;
  valid_ = std::make_unique<std::atomic<uint64_t>[]>(words);
  for (size_t i = 0; i < words; ++i) valid_[i].store(0, std::memory_order_relaxed);
}

std::unique_ptr<RemoteTier> RemoteTier::connect(const TierSpec& spec, const RemoteConfig& config) {
  std::unique_ptr<RemoteTier> tier(new RemoteTier(spec, config));
  try {
    tier->establish();
  } catch (const std::exception& error) {
    throw std::runtime_error("memory path element '" + spec.element + "': " + error.what());
  }
  tier->supervisor_ = std::thread([raw = tier.get()] { raw->supervise(); });
  return tier;
}

ControlConfig RemoteTier::control_config() const {
  ControlConfig config{spec_.location, spec_.port, config_.key, config_.connect_timeout};
  config.local = provider_ == Provider::kShm;
  return config;
}

void RemoteTier::establish() {
  // A donor on this host: its local control socket hands us the lease's memory file.
  const bool named = config_.provider.has_value();
  std::unique_ptr<ControlClient> control;
  if (!named || *config_.provider == Provider::kShm) {
    const bool local = is_local_host(spec_.location);
    if (local) {
      provider_ = Provider::kShm;
      try {
        control = ControlClient::connect(control_config());
      } catch (const ControlError& error) {
        if (named || error.code != ECONNREFUSED) throw;  // auto: a vmd without a local socket serves tcp
      }
    } else if (named) {
      throw std::runtime_error("EMP_TRANSPORT=shm needs a donor on this host, and " + where_ + " is not");
    }
  }
  if (!control) {
    provider_ = Provider::kTcp;
    control = ControlClient::connect(control_config());
    if (named) {
      provider_ = *config_.provider;
      if (!control->offers(provider_))
        throw std::runtime_error(std::string("vmd at ") + where_ + " does not serve the " + to_string(provider_) +
                                 " data plane");
    } else {
      provider_ = control->offers(Provider::kVerbs) ? Provider::kVerbs : Provider::kTcp;
    }
  }
  if (provider_ == Provider::kVerbs) open_fabric(control->peer());
  std::lock_guard lock(state_mu_);
  control_ = std::move(control);
  try {
    lease_locked("");
  } catch (const ControlError& error) {
    if (error.code != ENOSPC) throw;
    // The donor is full right now (often: this program's parent holds it). Most
    // programs never evict: the lease is taken when this one first writes to the donor.
    EMP_INFO("remote", "donor %s has no room for %llu MiB now (%s); the lease is taken at the first eviction",
             where_.c_str(), static_cast<unsigned long long>(spec_.size_bytes >> 20), error.what());
  }
}

void RemoteTier::open_fabric(const std::string& peer) {
  DomainOptions options;
  options.provider = provider_;
  options.node = peer;
  options.service = std::to_string(spec_.port);
  fabric_ = std::make_unique<FabricBuffers>(Domain::open(options));
}

struct RemoteTier::DonorPreparation final : tier::Tier::ChildPreparation {
  std::unique_ptr<ControlClient> control;
  protocol::LeaseGrant grant{};
  std::shared_ptr<Link> link;  // null for verbs
  void abandon() noexcept override {
    if (link) link->path->abandon();
    if (control) control->abandon();
  }
};

std::unique_ptr<tier::Tier::ChildPreparation> RemoteTier::prepare_child() noexcept {
  ResumeTicket ticket;
  {
    std::lock_guard lock(state_mu_);
    if (!leased_.load() || health() == tier::TierHealth::kLost) return nullptr;
    ticket = resume_;
  }
  try {
    auto preparation = std::make_unique<DonorPreparation>();
    preparation->control = ControlClient::connect(control_config());
    preparation->grant = preparation->control->lease(spec_.size_bytes, provider_, ticket);
    if (provider_ == Provider::kShm)  // no connection: the memory file came with the grant
      preparation->link = make_link(*preparation->control, preparation->grant);
    return preparation;
  } catch (const std::exception& error) {
    EMP_WARN("remote", "donor %s: cannot attach a forked child to lease %llx before the fork (%s); it attaches by "
             "itself", where_.c_str(), static_cast<unsigned long long>(ticket.lease_id), error.what());
    return nullptr;
  }
}

std::unique_ptr<tier::Tier> RemoteTier::continue_in_child(std::unique_ptr<ChildPreparation> preparation) {
  // Single-threaded here; this object is the parent's copy and none of its threads runs.
  std::unique_ptr<RemoteTier> child(new RemoteTier(spec_, config_));
  child->provider_ = provider_;
  child->resume_ = resume_;
  child->leased_.store(leased_.load());
  child->fail_fast_.store(fail_fast_.load());
  child->data_lost_.store(data_lost_.load());
  child->data_epoch_ = data_epoch_;
  const size_t words = (capacity() / kGranule + 63) / 64;
  for (size_t i = 0; i < words; ++i) child->valid_[i].store(valid_[i].load(std::memory_order_relaxed));
  if (health() == tier::TierHealth::kLost) child->health_.store(tier::TierHealth::kLost);
  auto* prepared = dynamic_cast<DonorPreparation*>(preparation.get());
  if (provider_ == Provider::kVerbs)
    child->open_fabric(prepared && prepared->control ? prepared->control->peer() : spec_.location);
  if (prepared && prepared->control) {
    child->control_ = std::move(prepared->control);
    if (prepared->link) child->link_ = std::move(prepared->link);
    else child->pending_grant_ = prepared->grant;  // the data path at the first I/O
  } else if (child->leased_.load()) {
    child->dormant_.store(true);  // attach by resuming the parent's lease at the first I/O
  }
  child->supervisor_ = std::thread([raw = child.get()] { raw->supervise(); });
  return child;
}

void RemoteTier::forget(uint64_t offset, uint64_t length) noexcept {
  std::shared_lock lock(loss_mu_);
  for (uint64_t g = offset / kGranule; g < (offset + length) / kGranule; ++g)
    valid_[g / 64].fetch_and(~(1ULL << (g % 64)), std::memory_order_relaxed);
}

void RemoteTier::lease_locked(const char* how) {
  auto grant = control_->lease(spec_.size_bytes, provider_, std::nullopt);
  auto link = make_link(*control_, grant);
  adopt_lease_locked(grant, std::move(link), std::move(control_));
  EMP_INFO("remote", "donor %s: lease %llx of %llu MiB over %s%s", where_.c_str(),
           static_cast<unsigned long long>(grant.lease_id), static_cast<unsigned long long>(spec_.size_bytes >> 20),
           to_string(provider_), how);
}

Status RemoteTier::take_deferred_lease() noexcept {
  std::lock_guard lock(state_mu_);
  if (leased_.load(std::memory_order_acquire)) return Status::ok();
  if (!control_) {
    // A forked child's tier (or one whose connection broke) has none yet: make it here.
    try {
      control_ = ControlClient::connect(control_config());
    } catch (const std::exception& error) {
      EMP_ERROR_LIMITED("remote", "donor %s: %s", where_.c_str(), error.what());
      return Status::error(EIO, "donor unreachable");
    }
  }
  try {
    lease_locked(" (taken at the first eviction)");
    return Status::ok();
  } catch (const ControlError& error) {
    EMP_ERROR_LIMITED("remote", "donor %s: %s", where_.c_str(), error.what());
    return Status::error(error.code == ENOSPC ? ENOSPC : EIO, "the donor has no lease for this process");
  } catch (const std::exception& error) {
    EMP_ERROR_LIMITED("remote", "donor %s: %s", where_.c_str(), error.what());
    return Status::error(EIO, "cannot lease memory on the donor");
  }
}

void RemoteTier::adopt_lease_locked(const protocol::LeaseGrant& grant, std::shared_ptr<Link> link,
                                    std::unique_ptr<ControlClient> control) {
  leased_.store(true, std::memory_order_release);
  resume_.lease_id = grant.lease_id;
  std::memcpy(resume_.token, grant.resume_token, sizeof resume_.token);
  link_ = std::move(link);
  control_ = std::move(control);
}

std::shared_ptr<RemoteTier::Link> RemoteTier::make_link(ControlClient& control, const protocol::LeaseGrant& grant) {
  auto link = std::make_shared<Link>();
  const Deadline deadline = deadline_after(config_.connect_timeout);
  switch (provider_) {
    case Provider::kShm:
      link->path = std::make_unique<ShmPath>(control.take_passed_fd(), grant.size_bytes);
      break;
    case Provider::kVerbs:
      link->path = FabricPath::connect(*fabric_, control.peer(), grant, config_.channel, deadline);
      break;
    case Provider::kTcp: {
      protocol::DataConnect hello{protocol::kDataMagic, protocol::kVersion, 0, grant.lease_id, {}};
      std::memcpy(hello.ticket, grant.ticket, sizeof hello.ticket);
      SocketPathOptions options;
      options.read_connections = config_.read_connections;
      options.op_timeout = config_.op_timeout;
      link->path = SocketPath::connect(control.peer(), grant.data_port, hello, options, deadline);
      break;
    }
  }
  std::shared_lock loss(loss_mu_);
  link->data_epoch = data_epoch_;
  return link;
}

RemoteTier::~RemoteTier() {
  {
    std::lock_guard lock(state_mu_);
    stopping_ = true;
  }
  state_cv_.notify_all();
  if (supervisor_.joinable()) supervisor_.join();
  std::lock_guard lock(state_mu_);
  if (control_ && leased_.load() && health() != tier::TierHealth::kLost) {
    Status status = control_->release(resume_.lease_id);
    if (!status) EMP_INFO("remote", "donor %s: releasing the lease: %s", where_.c_str(), status.to_string().c_str());
  }
  link_.reset();
  control_.reset();
}

std::string RemoteTier::describe() const {
  return name() + " (" + to_string(provider_) + ", " + std::to_string(capacity() >> 20) + " MiB, " +
         tier::to_string(health()) + (data_lost_.load() ? ", data lost once" : "") + ")";
}

uint64_t RemoteTier::lease_id() const {
  std::lock_guard lock(state_mu_);
  return resume_.lease_id;
}

Status RemoteTier::register_buffer(void* base, size_t length) noexcept {
  if (!base || !length) return Status::error(EINVAL, "registering an empty buffer");
  return fabric_ ? fabric_->register_buffer(base, length) : Status::ok();  // only verbs registers buffers
}

Status RemoteTier::read_impl(std::span<const tier::IoSpan> spans) noexcept { return transfer(spans, true); }
Status RemoteTier::write_impl(std::span<const tier::IoSpan> spans) noexcept { return transfer(spans, false); }

std::shared_ptr<RemoteTier::Link> RemoteTier::wait_for_link(Deadline deadline) noexcept {
  std::unique_lock lock(state_mu_);
  while (true) {
    if (health() == tier::TierHealth::kLost || stopping_) return nullptr;
    if (link_ && !link_->broken()) return link_;
    if (!link_ && pending_grant_ && control_) {
      // A forked child's first I/O: the data path to the lease its parent attached it to.
      protocol::LeaseGrant grant = *pending_grant_;
      pending_grant_.reset();
      try {
        link_ = make_link(*control_, grant);
        return link_;
      } catch (const std::exception& error) {
        EMP_INFO("remote", "donor %s: %s; reconnecting", where_.c_str(), error.what());
      }
    }
    if (!reconnect_needed_) {
      reconnect_needed_ = true;
      state_cv_.notify_all();
    }
    if (state_cv_.wait_until(lock, deadline) == std::cv_status::timeout) {
      if (link_ && !link_->broken()) return link_;
      return nullptr;
    }
  }
}

bool RemoteTier::readable(std::span<const tier::IoSpan> spans) const noexcept {
  std::shared_lock lock(loss_mu_);
  for (const auto& span : spans)
    for (uint64_t g = span.offset / kGranule; g < (span.offset + span.length) / kGranule; ++g)
      if (!(valid_[g / 64].load(std::memory_order_relaxed) & (1ULL << (g % 64)))) return false;
  return true;
}

bool RemoteTier::mark_written(const Link& link, std::span<const tier::IoSpan> spans) noexcept {
  std::shared_lock lock(loss_mu_);
  if (link.data_epoch != data_epoch_) return false;  // landed in a lease that is gone
  for (const auto& span : spans)
    for (uint64_t g = span.offset / kGranule; g < (span.offset + span.length) / kGranule; ++g)
      valid_[g / 64].fetch_or(1ULL << (g % 64), std::memory_order_relaxed);
  return true;
}

Status RemoteTier::run_ops(Link& link, std::span<const tier::IoSpan> spans, bool is_read) noexcept {
  Deadline deadline = deadline_after(config_.op_timeout);
  return is_read ? link.path->read(spans, deadline) : link.path->write(spans, deadline);
}

void RemoteTier::abandon_in_child() noexcept {
  // Single-threaded here (the parent's threads do not exist in the child) and their
  // locks may be held: touch the objects without locking.
  if (control_) control_->abandon();
  if (link_) link_->path->abandon();
}

uint64_t RemoteTier::data_epoch() const noexcept {
  std::shared_lock lock(loss_mu_);
  return data_epoch_;
}

Status RemoteTier::transfer(std::span<const tier::IoSpan> spans, bool is_read) noexcept {
  if (dormant_.load(std::memory_order_acquire)) {
    std::lock_guard lock(state_mu_);
    if (dormant_.exchange(false)) {
      first_attach_.store(true);
      reconnect_needed_ = true;  // the supervisor attaches to the parent's lease
      state_cv_.notify_all();
    }
  }
  if (!leased_.load(std::memory_order_acquire)) {
    if (is_read) return Status::error(EIO, "nothing was written to this donor");
    Status leased = take_deferred_lease();
    if (!leased) return leased;
  }
  const Deadline give_up = fail_fast_.load(std::memory_order_relaxed)
                               ? Clock::now()
                               : deadline_after(config_.op_timeout + config_.reconnect_window + config_.connect_timeout);
  Status last = Status::error(EIO, "remote I/O failed");
  for (int attempt = 0; attempt < 4; ++attempt) {
    if (health() == tier::TierHealth::kLost) return Status::error(EIO, "donor lost (vmd unreachable)");
    std::shared_ptr<Link> link = wait_for_link(give_up);
    if (!link) {
      if (health() == tier::TierHealth::kLost) return Status::error(EIO, "donor lost (vmd unreachable)");
      return Status::error(ETIMEDOUT, "donor unreachable (reconnecting)");
    }
    if (is_read && data_lost_.load(std::memory_order_acquire) && !readable(spans))
      return Status::error(EIO, "data lost: the donor restarted after it was written");
    last = run_ops(*link, spans, is_read);
    if (last) {
      if (is_read || mark_written(*link, spans)) return last;
      last = Status::error(EIO, "write landed in a lease that was lost");
      continue;  // rewrite it into the new lease
    }
    if (!link->broken()) return last;
    EMP_INFO("remote", "donor %s: %s; reconnecting", where_.c_str(), last.to_string().c_str());
    if (fail_fast_.load(std::memory_order_relaxed)) {
      std::lock_guard lock(state_mu_);
      reconnect_needed_ = true;
      state_cv_.notify_all();
      return last;
    }
  }
  return last;
}

void RemoteTier::supervise() noexcept {
  pthread_setname_np(pthread_self(), "emp-donor");
  while (true) {
    bool need = false;
    {
      std::unique_lock lock(state_mu_);
      state_cv_.wait_for(lock, config_.heartbeat_interval, [&] { return stopping_ || reconnect_needed_; });
      if (stopping_) return;
      if (health() == tier::TierHealth::kLost) {
        state_cv_.wait(lock, [&] { return stopping_; });
        return;
      }
      if (dormant_.load()) continue;  // a forked child that has not used the donor yet
      need = reconnect_needed_ || !control_ ||
             (leased_.load() && !pending_grant_ && (!link_ || link_->broken()));
    }
    if (!need) {
      tier::TierCounters counters = this->counters();
      protocol::Heartbeat beat{resume_.lease_id, counters.bytes_read, counters.bytes_written, counters.read_ops,
                               counters.write_ops};
      Status status = control_->heartbeat(beat);
      if (status) continue;
      EMP_INFO("remote", "donor %s: heartbeat failed: %s; reconnecting", where_.c_str(), status.to_string().c_str());
    }
    reconnect();
  }
}

void RemoteTier::declare_data_loss() {
  std::unique_lock lock(loss_mu_);
  size_t words = (capacity() / kGranule + 63) / 64;
  for (size_t i = 0; i < words; ++i) valid_[i].store(0, std::memory_order_relaxed);
  ++data_epoch_;
  data_lost_.store(true, std::memory_order_release);
}

void RemoteTier::reconnect() noexcept {
  std::shared_ptr<Link> old;
  {
    std::lock_guard lock(state_mu_);
    old = link_;
  }
  const bool leased = leased_.load(std::memory_order_acquire);  // else only the control connection to restore
  if (old) old->fail(Status::error(ECONNRESET, "reconnecting to the donor"));
  if (leased && health() == tier::TierHealth::kHealthy) health_.store(tier::TierHealth::kDegraded);
  const Deadline deadline = deadline_after(config_.reconnect_window);
  auto backoff = std::chrono::milliseconds(50);
  std::string last_error = "no attempt";
  while (Clock::now() < deadline) {
    try {
      auto control = ControlClient::connect(control_config());
      if (!leased) {
        std::lock_guard lock(state_mu_);
        // A deferred lease taken meanwhile came with its own connection: keep that one.
        if (!leased_.load(std::memory_order_acquire)) control_ = std::move(control);
        reconnect_needed_ = false;
        return;
      }
      ResumeTicket ticket;
      {
        std::lock_guard lock(state_mu_);
        ticket = resume_;
      }
      protocol::LeaseGrant grant;
      bool lost = false;
      try {
        grant = control->lease(spec_.size_bytes, provider_, ticket);
      } catch (const ControlError& error) {
        if (error.code != ENOENT) throw;
        lost = true;
      }
      if (lost) {
        EMP_ERROR("remote",
                  "donor %s no longer holds our lease (vmd restarted or the grace period expired): the data "
                  "stored there is lost; reads of it will fail, new writes go to a fresh lease",
                  where_.c_str());
        declare_data_loss();
        grant = control->lease(spec_.size_bytes, provider_, std::nullopt);
      }
      auto link = make_link(*control, grant);
      {
        std::lock_guard lock(state_mu_);
        adopt_lease_locked(grant, std::move(link), std::move(control));
        reconnect_needed_ = false;
      }
      health_.store(data_lost_.load() ? tier::TierHealth::kDegraded : tier::TierHealth::kHealthy);
      if (first_attach_.exchange(false) && !lost) {
        EMP_INFO("remote", "donor %s: this forked process attached to its parent's lease %llx", where_.c_str(),
                 static_cast<unsigned long long>(grant.lease_id));
      } else {
        reconnects_.fetch_add(1);
        EMP_WARN("remote", "donor %s: reconnected (%s lease %llx)", where_.c_str(), lost ? "new" : "resumed",
                 static_cast<unsigned long long>(grant.lease_id));
      }
      state_cv_.notify_all();
      return;
    } catch (const ControlError& error) {
      last_error = error.what();
      if (error.code == EACCES) break;  // the key no longer matches: retrying cannot help
    } catch (const std::exception& error) {
      last_error = error.what();
    }
    std::unique_lock lock(state_mu_);
    if (state_cv_.wait_for(lock, backoff, [&] { return stopping_; })) return;
    backoff = std::min(backoff * 2, std::chrono::milliseconds(1000));
  }
  health_.store(tier::TierHealth::kLost);
  EMP_ERROR("remote", "donor %s is lost (%s); I/O on it fails from now on", where_.c_str(), last_error.c_str());
  std::lock_guard lock(state_mu_);
  reconnect_needed_ = false;
  state_cv_.notify_all();
}

void RemoteTier::drop_data_path_for_testing() {
  std::shared_ptr<Link> link;
  {
    std::lock_guard lock(state_mu_);
    link = link_;
  }
  if (link) link->fail(Status::error(ECONNRESET, "data path dropped (test)"));
}

std::optional<tier::DonorState> RemoteTier::donor_state() const {
  return tier::DonorState{to_string(provider()), lease_id(), reconnects(), data_lost()};
}

}  // namespace emp::net
