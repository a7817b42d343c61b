#include "net/remote_tier.h"

#include <pthread.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "common/log.h"

namespace emp::net {
namespace {

constexpr size_t kGranule = 4096;
constexpr size_t kChunk = 64;  // RMA operations per posted batch

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

void RemoteTier::establish() {
  ControlConfig control_config{spec_.location, spec_.port, config_.key, config_.connect_timeout};
  auto control = ControlClient::connect(control_config);
  if (config_.provider) {
    provider_ = *config_.provider;
    if (!control->offers(provider_))
      throw std::runtime_error(std::string("vmd at ") + where_ + " does not serve the " + to_string(provider_) +
                               " data plane");
  } else {
    provider_ = control->offers(Provider::kVerbs) ? Provider::kVerbs : Provider::kTcp;
  }
  DomainOptions options;
  options.provider = provider_;
  options.node = control->peer();
  options.service = std::to_string(spec_.port);
  domain_ = Domain::open(options);
  auto grant = control->lease(spec_.size_bytes, provider_, std::nullopt);
  auto link = make_link(*control, grant);
  std::lock_guard lock(state_mu_);
  adopt_lease_locked(grant, std::move(link), std::move(control));
  EMP_INFO("remote", "donor %s: lease %llx of %llu MiB over %s", where_.c_str(),
           static_cast<unsigned long long>(grant.lease_id), static_cast<unsigned long long>(spec_.size_bytes >> 20),
           to_string(provider_));
}

void RemoteTier::adopt_lease_locked(const protocol::LeaseGrant& grant, std::shared_ptr<Link> link,
                                    std::unique_ptr<ControlClient> control) {
  resume_.lease_id = grant.lease_id;
  std::memcpy(resume_.token, grant.resume_token, sizeof resume_.token);
  link_ = std::move(link);
  control_ = std::move(control);
}

std::shared_ptr<RemoteTier::Link> RemoteTier::make_link(ControlClient& control, const protocol::LeaseGrant& grant) {
  auto link = std::make_shared<Link>();
  auto open_channel = [&]() -> std::shared_ptr<Channel> {
    if (provider_ == Provider::kShm)
      return Channel::attach(*domain_, {grant.address, grant.address_length}, config_.channel);
    protocol::DataConnect request{protocol::kDataMagic, protocol::kVersion, 0, grant.lease_id, {}};
    std::memcpy(request.ticket, grant.ticket, sizeof request.ticket);
    return Channel::connect(*domain_, control.peer(), grant.data_port,
                            {reinterpret_cast<const uint8_t*>(&request), sizeof request},
                            deadline_after(config_.connect_timeout), config_.channel);
  };
  link->reads = open_channel();
  link->writes = open_channel();
  link->key = grant.mr_key;
  link->base = grant.remote_base;
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
  if (control_ && health() != tier::TierHealth::kLost) {
    Status status = control_->release(resume_.lease_id);
    if (!status) EMP_INFO("remote", "donor %s: releasing the lease: %s", where_.c_str(), status.to_string().c_str());
  }
  link_.reset();
  control_.reset();
  std::unique_lock reg(reg_mu_);
  registrations_.clear();
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
  // Providers that do not need local registrations (tcp, shm) get none.
  if (!domain_->local_mr_required()) return Status::ok();
  Result<fid_mr*> mr = Status::error(EEXIST, "fi_mr_reg");
  for (int attempt = 0; attempt < 8 && !mr && mr.status().code() == EEXIST; ++attempt)
    mr = domain_->register_memory(base, length, FI_READ | FI_WRITE, domain_->random_key());
  if (!mr) return mr.status();
  try {
    std::unique_lock lock(reg_mu_);
    Registration registration{reinterpret_cast<uintptr_t>(base), length, MemoryRegion(*mr)};
    auto at = std::lower_bound(registrations_.begin(), registrations_.end(), registration.base,
                               [](const Registration& r, uintptr_t b) { return r.base < b; });
    registrations_.insert(at, std::move(registration));
  } catch (...) {
    fi_close(&(*mr)->fid);
    return Status::error(ENOMEM, "registering a buffer");
  }
  return Status::ok();
}

void* RemoteTier::find_desc(const void* buffer, size_t length, bool* found) const noexcept {
  uintptr_t address = reinterpret_cast<uintptr_t>(buffer);
  std::shared_lock lock(reg_mu_);
  auto it = std::upper_bound(registrations_.begin(), registrations_.end(), address,
                             [](uintptr_t a, const Registration& r) { return a < r.base; });
  if (it != registrations_.begin()) {
    --it;
    if (address >= it->base && address + length <= it->base + it->length) {
      *found = true;
      return it->mr.desc();
    }
  }
  *found = false;
  return nullptr;
}

Status RemoteTier::read_impl(std::span<const tier::IoSpan> spans) noexcept { return transfer(spans, true); }
Status RemoteTier::write_impl(std::span<const tier::IoSpan> spans) noexcept { return transfer(spans, false); }

std::shared_ptr<RemoteTier::Link> RemoteTier::wait_for_link(Deadline deadline) noexcept {
  std::unique_lock lock(state_mu_);
  while (true) {
    if (health() == tier::TierHealth::kLost || stopping_) return nullptr;
    if (link_ && !link_->broken()) return link_;
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
  const bool need_mr = domain_->local_mr_required();
  for (size_t first = 0; first < spans.size(); first += kChunk) {
    size_t count = std::min(kChunk, spans.size() - first);
    RmaOp ops[kChunk];
    MemoryRegion temporary[kChunk];
    for (size_t i = 0; i < count; ++i) {
      const tier::IoSpan& span = spans[first + i];
      bool found = false;
      void* desc = find_desc(span.buffer, span.length, &found);
      if (!found && need_mr) {
        // An unregistered buffer on a provider that needs registration: register it
        // for this call only (slow but correct; the engine registers its staging).
        auto mr = domain_->register_memory(span.buffer, span.length, FI_READ | FI_WRITE, domain_->random_key());
        if (!mr) return mr.status();
        temporary[i] = MemoryRegion(*mr);
        desc = temporary[i].desc();
      }
      ops[i] = RmaOp{span.buffer, span.length, desc, link.base + span.offset};
    }
    Deadline deadline = deadline_after(config_.op_timeout);
    Status status = is_read ? link.reads->read({ops, count}, link.key, deadline)
                            : link.writes->write({ops, count}, link.key, deadline);
    if (!status) return status;
  }
  return Status::ok();
}

Status RemoteTier::transfer(std::span<const tier::IoSpan> spans, bool is_read) noexcept {
  const Deadline give_up = deadline_after(config_.op_timeout + config_.reconnect_window + config_.connect_timeout);
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
      need = reconnect_needed_ || !link_ || link_->broken();
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
  if (old) old->fail(Status::error(ECONNRESET, "reconnecting to the donor"));
  if (health() == tier::TierHealth::kHealthy) health_.store(tier::TierHealth::kDegraded);
  const Deadline deadline = deadline_after(config_.reconnect_window);
  auto backoff = std::chrono::milliseconds(50);
  std::string last_error = "no attempt";
  while (Clock::now() < deadline) {
    try {
      ControlConfig control_config{spec_.location, spec_.port, config_.key, config_.connect_timeout};
      auto control = ControlClient::connect(control_config);
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
      reconnects_.fetch_add(1);
      EMP_WARN("remote", "donor %s: reconnected (%s lease %llx)", where_.c_str(), lost ? "new" : "resumed",
               static_cast<unsigned long long>(grant.lease_id));
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

void RemoteTier::drop_connections_for_testing() {
  std::shared_ptr<Link> link;
  {
    std::lock_guard lock(state_mu_);
    link = link_;
    if (control_) control_->shutdown_for_testing();
  }
  if (link) link->fail(Status::error(ECONNRESET, "connection dropped (test)"));
}

std::optional<tier::DonorState> RemoteTier::donor_state() const {
  return tier::DonorState{to_string(provider()), lease_id(), reconnects(), data_lost()};
}

}  // namespace emp::net
