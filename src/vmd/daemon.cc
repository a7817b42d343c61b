#include "vmd/daemon.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>

#include <cstring>
#include <sstream>
#include <stdexcept>
#include <system_error>

#include "common/log.h"
#include "net/auth.h"
#include "net/metrics_http.h"
#include "net/socket.h"

namespace emp::vmd {
namespace proto = net::protocol;

namespace {

constexpr auto kAuthTimeout = std::chrono::seconds(10);
constexpr size_t kMaxInput = sizeof(proto::FrameHeader) + proto::kMaxPayload;

void set_nonblocking(int fd) { ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK); }

}  // namespace

Daemon::Daemon(const VmdConfig& config)
    : config_(config), pool_(config.pool_bytes), extents_(config.pool_bytes) {
  if (!config_.auth_key_file.empty()) key_ = net::read_key_file(config_.auth_key_file);
  if (!config_.bind_given) config_.bind_address = key_.empty() ? "127.0.0.1" : "";
  const bool loopback = !config_.bind_address.empty() && net::is_loopback_address(config_.bind_address);
  if (key_.empty() && !loopback && !config_.insecure)
    throw std::invalid_argument("refusing to listen on " +
                                (config_.bind_address.empty() ? std::string("all addresses") : config_.bind_address) +
                                " without an auth key: give --auth-key-file FILE, or --insecure to allow it");
  if (key_.empty() && !config_.bind_given)
    EMP_INFO("vmd", "no auth key: listening on 127.0.0.1 only (use --auth-key-file to serve other hosts)");
  instance_ = net::random_u64() & 0xffffffffULL;

  // Signals first, so the exporter's thread inherits the blocked mask.
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  pthread_sigmask(SIG_BLOCK, &mask, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
  signal_fd_ = UniqueFd(::signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!signal_fd_.valid()) throw std::system_error(errno, std::generic_category(), "signalfd");

  lease_worker_ = std::make_unique<LeaseWorker>(pool_);
  socket_server_ = std::make_unique<SocketServer>(config_.bind_address);
  if (config_.device != "tcp") {
    net::ExporterConfig exporter_config;
    exporter_config.provider = net::Provider::kVerbs;
    exporter_config.device = config_.device;
    exporter_config.bind_address = config_.bind_address;
    exporter_ = net::Exporter::open(exporter_config);
  }

  listen_fd_ = net::tcp_listen(config_.bind_address, config_.port);
  set_nonblocking(listen_fd_.get());
  if (config_.enable_shm) {
    try {
      local_listen_fd_ = net::local_listen(net::local_control_name(control_port()));
      set_nonblocking(local_listen_fd_.get());
    } catch (const std::exception& error) {
      EMP_WARN("vmd", "same-host clients will use tcp: %s", error.what());
    }
  }
  if (config_.metrics_port) {
    metrics_fd_ = net::tcp_listen(config_.metrics_address, config_.metrics_port);
    set_nonblocking(metrics_fd_.get());
  }
  EMP_INFO("vmd", "pool %llu MiB (%s), control %s:%u, data plane %s, auth %s, max clients %u",
           static_cast<unsigned long long>(pool_.size() >> 20), pool_.locked() ? "locked" : "NOT locked",
           config_.bind_address.empty() ? "*" : config_.bind_address.c_str(), control_port(),
           describe_data_planes().c_str(), key_.empty() ? "off" : "HMAC-SHA256", config_.max_clients);
}

std::string Daemon::describe_data_planes() const {
  std::string text = "tcp data port " + std::to_string(socket_server_->port());
  if (exporter_) text += ", " + exporter_->describe();
  if (local_listen_fd_.valid()) text += ", shm for same-host clients (@" + net::local_control_name(control_port()) + ")";
  return text;
}

uint16_t Daemon::providers_for(const Session& session) const noexcept {
  uint16_t mask = static_cast<uint16_t>(net::protocol::ProviderId::kTcp);
  if (exporter_) mask |= static_cast<uint16_t>(net::protocol::ProviderId::kVerbs);
  if (session.local) mask |= static_cast<uint16_t>(net::protocol::ProviderId::kShm);
  return mask;
}

Daemon::~Daemon() {
  socket_server_.reset();
  lease_worker_.reset();  // runs the queued jobs first
  for (auto& [id, lease] : leases_) lease.registration.reset();
  exporter_.reset();
}

uint16_t Daemon::control_port() const noexcept { return net::local_port(listen_fd_.get()); }

int Daemon::run() {
  std::fprintf(stderr, "vmd: serving %llu MiB on port %u (%s)\n", static_cast<unsigned long long>(pool_.size() >> 20),
               control_port(), describe_data_planes().c_str());
  while (true) {
    std::vector<pollfd> fds;
    fds.push_back({signal_fd_.get(), POLLIN, 0});
    fds.push_back({listen_fd_.get(), POLLIN, 0});
    fds.push_back({metrics_fd_.valid() ? metrics_fd_.get() : -1, POLLIN, 0});
    const bool can_wait = !exporter_ || exporter_->ready_to_wait();
    fds.push_back({exporter_ ? exporter_->event_fd() : -1, POLLIN, 0});
    fds.push_back({local_listen_fd_.valid() ? local_listen_fd_.get() : -1, POLLIN, 0});
    fds.push_back({lease_worker_->event_fd(), POLLIN, 0});
    std::vector<uint64_t> ids;
    for (auto& [id, session] : sessions_) {
      fds.push_back({session.fd.get(), POLLIN, 0});
      ids.push_back(id);
    }
    int ready = ::poll(fds.data(), fds.size(), can_wait ? 250 : 0);
    if (ready < 0 && errno != EINTR) throw std::system_error(errno, std::generic_category(), "poll");
    if (fds[0].revents & POLLIN) {
      signalfd_siginfo info{};
      (void)!::read(signal_fd_.get(), &info, sizeof info);
      std::fprintf(stderr, "vmd: signal %u, shutting down (%zu sessions, %zu leases)\n", info.ssi_signo,
                   sessions_.size(), leases_.size());
      break;
    }
    if (fds[1].revents & POLLIN) accept_clients(listen_fd_.get(), false);
    if (fds[2].revents & POLLIN) serve_metrics();
    if (exporter_)
      exporter_->process_events([this](std::span<const uint8_t> data) { return admit_data_connection(data); });
    if (fds[4].revents & POLLIN) accept_clients(local_listen_fd_.get(), true);
    if (fds[5].revents & POLLIN) finish_leases();
    for (size_t i = 0; i < ids.size(); ++i) {
      if (!fds[6 + i].revents) continue;
      auto it = sessions_.find(ids[i]);
      if (it != sessions_.end()) read_session(it->second);
    }
    expire_timers();
  }
  // Clean shutdown: close sessions (data connections go with them), drop registrations.
  std::vector<uint64_t> ids;
  for (auto& [id, session] : sessions_) ids.push_back(id);
  for (uint64_t id : ids) close_session(id, "shutdown");
  std::vector<uint64_t> lease_ids;
  for (auto& [id, lease] : leases_) lease_ids.push_back(id);
  for (uint64_t id : lease_ids) free_lease(id, "shutdown");
  return 0;
}

void Daemon::accept_clients(int listen_fd, bool local) {
  while (true) {
    UniqueFd fd(::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!fd.valid()) return;
    ++counters_.connections_total;
    Session session;
    session.id = next_session_++;
    session.local = local;
    if (local) {
      ucred peer{};
      socklen_t length = sizeof peer;
      ::getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &peer, &length);
      session.peer = "local pid " + std::to_string(peer.pid);
    } else {
      session.peer = net::peer_address(fd.get());
    }
    session.fd = std::move(fd);
    session.deadline = Clock::now() + kAuthTimeout;
    if (sessions_.size() >= config_.max_clients) {
      ++counters_.rejected_clients_total;
      EMP_WARN("vmd", "refusing client %s: %u clients already connected (-c)", session.peer.c_str(), config_.max_clients);
      reject(session, EBUSY, "too many clients (vmd -c " + std::to_string(config_.max_clients) + ")");
      continue;
    }
    proto::Hello hello{};
    hello.min_version = proto::kVersion;
    hello.max_version = proto::kVersion;
    hello.flags = key_.empty() ? 0 : proto::kHelloAuthRequired;
    hello.providers = providers_for(session);
    net::random_bytes(hello.server_nonce);
    std::memcpy(session.server_nonce, hello.server_nonce, sizeof hello.server_nonce);
    hello.pool_bytes = pool_.size();
    hello.free_bytes = extents_.free_bytes();
    EMP_INFO("vmd", "client %s connected (session %llu)", session.peer.c_str(),
             static_cast<unsigned long long>(session.id));
    if (!send(session, proto::encode(hello))) continue;
    uint64_t id = session.id;
    sessions_.emplace(id, std::move(session));
  }
}

bool Daemon::send(Session& session, const std::vector<uint8_t>& bytes, int pass_fd) {
  // Replies are small; a client that does not read them is dropped rather than
  // allowed to stall the loop.
  Status status =
      net::send_all(session.fd.get(), bytes, net::deadline_after(std::chrono::milliseconds(200)), pass_fd);
  if (!status) EMP_INFO("vmd", "client %s: %s", session.peer.c_str(), status.to_string().c_str());
  return status.is_ok();
}

bool Daemon::refuse(Session& session, int code, const std::string& text, uint32_t sequence) {
  return send(session, proto::encode(proto::make_error(code, text), sequence));
}

bool Daemon::reject(Session& session, int code, const std::string& text, uint32_t sequence) {
  (void)send(session, proto::encode(proto::make_error(code, text), sequence));
  return false;
}

void Daemon::read_session(Session& session) {
  uint64_t id = session.id;
  uint8_t buffer[4096];
  while (true) {
    ssize_t n = ::recv(session.fd.get(), buffer, sizeof buffer, MSG_DONTWAIT);
    // The client's kernel closed the connection (FIN, or RST when unread data was
    // left): its process exited, was killed or exec'd. Its lease goes at once.
    if (n == 0) return close_session(id, "disconnected", SessionEnd::kClientGone);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      if (errno == EINTR) continue;
      if (errno == ECONNRESET) return close_session(id, "connection reset", SessionEnd::kClientGone);
      return close_session(id, "receive error");
    }
    if (!consume(session, {buffer, static_cast<size_t>(n)})) return;
    if (session.input.size() > kMaxInput) {
      ++counters_.protocol_errors_total;
      return close_session(id, "oversized input");
    }
  }
}

bool Daemon::consume(Session& session, std::span<const uint8_t> bytes) {
  uint64_t id = session.id;
  session.input.insert(session.input.end(), bytes.begin(), bytes.end());
  // Parse every complete frame; the buffer never holds more than one frame's bound.
  while (true) {
    auto header = proto::peek_header(session.input);
    if (!header) break;
    proto::HeaderCheck check = proto::check_header(*header);
    if (check != proto::HeaderCheck::kOk) {
      ++counters_.protocol_errors_total;
      EMP_WARN("vmd", "client %s sent a malformed message (%s); closing", session.peer.c_str(),
               proto::to_string(check));
      reject(session, EPROTO, std::string("malformed message: ") + proto::to_string(check), header->sequence);
      close_session(id, "protocol error");
      return false;
    }
    size_t total = sizeof(proto::FrameHeader) + header->length;
    if (session.input.size() < total) break;
    std::span<const uint8_t> payload(session.input.data() + sizeof(proto::FrameHeader), header->length);
    bool keep = handle_frame(session, *header, payload);
    if (!keep) {
      close_session(id, "request refused");
      return false;
    }
    session.input.erase(session.input.begin(), session.input.begin() + static_cast<ptrdiff_t>(total));
  }
  return true;
}

void Daemon::feed_for_testing(std::span<const uint8_t> bytes, bool local) {
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, pair) != 0) return;
  UniqueFd peer(pair[1]);
  Session session;
  session.id = next_session_++;
  session.local = local;
  session.peer = "fuzz";
  session.fd = UniqueFd(pair[0]);
  session.deadline = Clock::now() + kAuthTimeout;
  uint64_t id = session.id;
  Session& held = sessions_.emplace(id, std::move(session)).first->second;
  // Replies go to `peer`, which is drained after each step so no send can block.
  uint8_t sink[4096];
  auto drain = [&] {
    while (::recv(peer.get(), sink, sizeof sink, MSG_DONTWAIT) > 0) {
    }
  };
  for (size_t at = 0; at < bytes.size() && sessions_.count(id); at += 512) {
    if (!consume(held, bytes.subspan(at, std::min<size_t>(512, bytes.size() - at)))) break;
    drain();
  }
  finish_leases();
  drain();
  close_session(id, "fuzz input done", SessionEnd::kClientGone);
}

bool Daemon::handle_frame(Session& session, const proto::FrameHeader& header, std::span<const uint8_t> payload) {
  auto type = static_cast<proto::MessageType>(header.type);
  if (session.state == SessionState::kAwaitAuth) {
    auto auth = proto::decode<proto::Auth>(header, payload);
    if (!auth) {
      ++counters_.protocol_errors_total;
      return reject(session, EPROTO, std::string("expected Auth, got ") + proto::to_string(type), header.sequence);
    }
    return handle_auth(session, *auth, header.sequence);
  }
  session.deadline = Clock::now() + config_.idle_timeout;
  switch (type) {
    case proto::MessageType::kLeaseRequest:
      return handle_lease(session, *proto::decode<proto::LeaseRequest>(header, payload), header.sequence);
    case proto::MessageType::kHeartbeat: {
      auto beat = *proto::decode<proto::Heartbeat>(header, payload);
      if (session.lease != 0 && beat.lease_id == session.lease) {
        uint64_t now[4] = {beat.bytes_read, beat.bytes_written, beat.read_ops, beat.write_ops};
        uint64_t* totals[4] = {&counters_.bytes_read_total, &counters_.bytes_written_total, &counters_.read_ops_total,
                               &counters_.write_ops_total};
        for (int i = 0; i < 4; ++i) {
          if (now[i] >= session.reported[i]) *totals[i] += now[i] - session.reported[i];
          session.reported[i] = now[i];
        }
      }
      return send(session, proto::encode(proto::HeartbeatAck{beat.lease_id}, header.sequence));
    }
    case proto::MessageType::kRelease: {
      auto release = *proto::decode<proto::Release>(header, payload);
      if (release.lease_id != session.lease || session.lease == 0)
        return reject(session, ENOENT, "no such lease on this connection", header.sequence);
      auto it = leases_.find(session.lease);
      if (it != leases_.end()) {
        drop_holder(it->second, session.id);
        if (it->second.holders.empty()) {
          free_lease(session.lease, "released");
          ++counters_.leases_released_total;
        }
      }
      session.lease = 0;
      return send(session, proto::encode(proto::ReleaseOk{release.lease_id}, header.sequence));
    }
    default:
      ++counters_.protocol_errors_total;
      return reject(session, EPROTO, std::string("unexpected message ") + proto::to_string(type), header.sequence);
  }
}

bool Daemon::handle_auth(Session& session, const proto::Auth& auth, uint32_t sequence) {
  proto::AuthOk ok{};
  if (!key_.empty()) {
    net::Mac expected = net::auth_mac(key_, net::kClientLabel, session.server_nonce, auth.client_nonce);
    if (!net::constant_time_equal(expected, auth.mac)) {
      ++counters_.auth_failures_total;
      EMP_WARN("vmd", "client %s failed authentication (wrong key)", session.peer.c_str());
      return reject(session, EACCES, "authentication failed: wrong auth key", sequence);
    }
    net::Mac proof = net::auth_mac(key_, net::kServerLabel, auth.client_nonce, session.server_nonce);
    std::memcpy(ok.mac, proof.data(), proof.size());
  }
  session.state = SessionState::kReady;
  session.deadline = Clock::now() + config_.idle_timeout;
  return send(session, proto::encode(ok, sequence));
}

bool Daemon::handle_lease(Session& session, const proto::LeaseRequest& request, uint32_t sequence) {
  if (session.lease != 0 || session.pending_lease != 0)
    return refuse(session, EEXIST, "this connection already holds a lease", sequence);
  auto provider = net::provider_from_wire(request.provider);
  if (!provider || !(providers_for(session) & request.provider))
    return refuse(session, EPROTONOSUPPORT,
                  provider == net::Provider::kShm ? "shm is served only through vmd's local control socket"
                                                  : "data-plane provider not served by this vmd",
                  sequence);
  if (request.flags & proto::kLeaseResume) {
    auto it = leases_.find(request.lease_id);
    if (it == leases_.end() || !net::constant_time_equal(it->second.resume_token, request.resume_token) ||
        it->second.size < request.size_bytes)
      return refuse(session, ENOENT, "unknown lease (vmd restarted or the grace period expired)", sequence);
    Lease& lease = it->second;
    // One more holder: a client back after a reconnect (its old session, if vmd has not
    // noticed it is dead, ends at its idle timeout) or a forked child of a holder.
    if (lease.provider != *provider && !lease.holders.empty())
      return refuse(session, EPROTONOSUPPORT,
                    std::string("this lease is served over ") + net::to_string(lease.provider) + " to its holders",
                    sequence);
    lease.provider = *provider;
    ++counters_.leases_resumed_total;
    return grant_lease(session, lease, /*resumed=*/true, sequence);
  }
  if (request.size_bytes == 0 || request.size_bytes > pool_.size())
    return refuse(session, EINVAL, "lease size out of range", sequence);
  auto offset = extents_.allocate(request.size_bytes);
  if (!offset)
    return refuse(session, ENOSPC,
                  "not enough free memory: " + std::to_string(request.size_bytes >> 20) + " MiB asked, " +
                      std::to_string(extents_.free_bytes() >> 20) + " MiB free",
                  sequence);
  // The memory is made on the lease worker; the grant goes out when it is ready.
  PendingLease pending;
  pending.session = session.id;
  pending.sequence = sequence;
  Lease& fresh = pending.lease;
  fresh.id = (instance_ << 32) | (next_lease_++ & 0xffffffffULL);
  fresh.offset = *offset;
  fresh.size = ExtentAllocator::round(request.size_bytes);
  fresh.provider = *provider;
  net::random_bytes(fresh.resume_token);
  session.pending_lease = fresh.id;
  lease_worker_->create(fresh.id, fresh.offset, fresh.size);
  pending_leases_.emplace(fresh.id, std::move(pending));
  return true;
}

void Daemon::finish_leases() {
  for (auto& done : lease_worker_->take_completed()) {
    auto it = pending_leases_.find(done.token);
    if (it == pending_leases_.end()) continue;
    PendingLease pending = std::move(it->second);
    pending_leases_.erase(it);
    Lease& fresh = pending.lease;
    fresh.memory = std::move(done.memory);
    auto session_it = sessions_.find(pending.session);
    Session* session = session_it != sessions_.end() && session_it->second.pending_lease == fresh.id
                           ? &session_it->second
                           : nullptr;
    if (session) session->pending_lease = 0;
    std::string error = done.error;
    if (fresh.memory && exporter_) {
      try {
        fresh.registration = exporter_->export_memory(fresh.memory->data(), fresh.size);
      } catch (const std::exception& failure) {
        error = failure.what();
      }
    }
    if (!error.empty() || !session) {
      // Failed, or the client left while its memory was being made.
      if (fresh.memory) {
        fresh.registration.reset();
        lease_worker_->retire(std::move(fresh.memory), fresh.offset, fresh.size);
      }
      extents_.release(fresh.offset, fresh.size);
      if (!error.empty()) EMP_ERROR("vmd", "%s", error.c_str());
      if (session && !refuse(*session, EIO, error, pending.sequence)) close_session(session->id, "send failed");
      continue;
    }
    ++counters_.leases_granted_total;
    Lease& lease = leases_.emplace(fresh.id, std::move(fresh)).first->second;
    if (!grant_lease(*session, lease, /*resumed=*/false, pending.sequence)) close_session(session->id, "send failed");
  }
}

bool Daemon::grant_lease(Session& session, Lease& lease, bool resumed, uint32_t sequence) {
  Lease::Ticket& ticket = lease.holders[session.id];
  net::random_bytes(ticket.bytes);  // a data-connection ticket per attachment
  session.lease = lease.id;
  proto::LeaseGrant grant{};
  grant.lease_id = lease.id;
  grant.size_bytes = lease.size;
  if (lease.provider == net::Provider::kVerbs) {
    grant.remote_base = exporter_->remote_base(lease.memory->data());
    grant.mr_key = lease.registration.key();
  }
  std::memcpy(grant.resume_token, lease.resume_token, sizeof grant.resume_token);
  std::memcpy(grant.ticket, ticket.bytes, sizeof grant.ticket);
  grant.provider = static_cast<uint16_t>(net::to_wire(lease.provider));
  grant.flags = resumed ? proto::kGrantResumed : 0;
  grant.data_port = lease.provider == net::Provider::kVerbs ? exporter_->data_port() : socket_server_->port();
  if (lease.provider == net::Provider::kTcp) socket_server_->allow(lease.id, ticket.bytes, session.id, lease.memory);
  EMP_INFO("vmd", "client %s: %s lease %llx (%llu MiB at offset %llu MiB, %s)", session.peer.c_str(),
           resumed ? "resumed" : "granted", static_cast<unsigned long long>(lease.id),
           static_cast<unsigned long long>(lease.size >> 20), static_cast<unsigned long long>(lease.offset >> 20),
           net::to_string(lease.provider));
  return send(session, proto::encode(grant, sequence),
              lease.provider == net::Provider::kShm ? lease.memory->fd() : -1);  // shm: the memory file itself
}

uint64_t Daemon::admit_data_connection(std::span<const uint8_t> data) {
  proto::DataConnect request{};
  if (data.size() < sizeof request) {
    ++counters_.data_connections_rejected_total;
    return 0;
  }
  std::memcpy(&request, data.data(), sizeof request);
  auto it = leases_.find(request.lease_id);
  if (request.magic == proto::kDataMagic && request.version == proto::kVersion && it != leases_.end()) {
    for (const auto& [holder, ticket] : it->second.holders)
      if (net::constant_time_equal(ticket.bytes, request.ticket)) return holder;
  }
  ++counters_.data_connections_rejected_total;
  EMP_WARN("vmd", "rejected a data connection with an invalid ticket");
  return 0;
}

void Daemon::disconnect_data(uint64_t session) noexcept {
  socket_server_->disconnect(session);
  if (exporter_) exporter_->disconnect(session);
}

void Daemon::drop_holder(Lease& lease, uint64_t session) {
  if (lease.holders.erase(session) == 0) return;
  disconnect_data(session);
  if (lease.holders.empty()) lease.expires = Clock::now() + config_.grace;
}

void Daemon::close_session(uint64_t id, const char* why, SessionEnd end) {
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return;
  Session& session = it->second;
  EMP_INFO("vmd", "client %s (session %llu): %s", session.peer.c_str(), static_cast<unsigned long long>(id), why);
  if (session.lease) {
    auto lease = leases_.find(session.lease);
    if (lease != leases_.end() && lease->second.holders.count(id)) {
      drop_holder(lease->second, id);
      if (!lease->second.holders.empty()) {
        // Other holders (a forked child, a reconnected client) keep it.
      } else if (end == SessionEnd::kClientGone) {
        ++counters_.leases_released_total;
        free_lease(lease->first, "released: its client closed the connection");
      } else if (config_.grace.count() == 0) {
        free_lease(lease->first, "client gone (no grace period)");
      }
    }
  }
  disconnect_data(id);
  sessions_.erase(it);
}

void Daemon::free_lease(uint64_t id, const char* why) {
  auto it = leases_.find(id);
  if (it == leases_.end()) return;
  Lease& lease = it->second;
  for (const auto& [holder, ticket] : lease.holders) {
    disconnect_data(holder);
    auto session = sessions_.find(holder);
    if (session != sessions_.end()) session->second.lease = 0;
  }
  // No one reaches the memory once its connections and registration are closed; the
  // lease worker frees the memory file (a same-host client that keeps its descriptor
  // reads zeros) and takes the pool's pages back before any later lease borrows them.
  lease.registration.reset();
  lease_worker_->retire(std::move(lease.memory), lease.offset, lease.size);
  extents_.release(lease.offset, lease.size);
  EMP_INFO("vmd", "lease %llx (%llu MiB) %s; freed", static_cast<unsigned long long>(id),
           static_cast<unsigned long long>(lease.size >> 20), why);
  leases_.erase(it);
}

void Daemon::expire_timers() {
  auto now = Clock::now();
  std::vector<uint64_t> stale;
  for (auto& [id, session] : sessions_)
    if (now >= session.deadline) stale.push_back(id);
  for (uint64_t id : stale) {
    auto it = sessions_.find(id);
    bool authenticated = it->second.state == SessionState::kReady;
    if (!authenticated) ++counters_.auth_failures_total;
    close_session(id, authenticated ? "idle timeout" : "did not authenticate in time");
  }
  std::vector<uint64_t> expired;
  for (auto& [id, lease] : leases_)
    if (lease.holders.empty() && now >= lease.expires) expired.push_back(id);
  for (uint64_t id : expired) {
    ++counters_.leases_expired_total;
    free_lease(id, "expired (client did not come back within the grace period)");
  }
}

void Daemon::serve_metrics() {
  while (true) {
    UniqueFd fd(::accept4(metrics_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!fd.valid()) return;
    net::answer_metrics_request(fd.get(), metrics_text());
  }
}

std::string Daemon::metrics_text() const {
  std::ostringstream out;
  auto metric = [&](const char* name, const char* type, const char* help, uint64_t value) {
    out << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n' << name << ' ' << value << '\n';
  };
  uint64_t active = 0, orphaned = 0, leased = 0;
  for (const auto& [id, lease] : leases_) {
    (lease.holders.empty() ? orphaned : active) += 1;
    leased += lease.size;
  }
  metric("emp_vmd_pool_bytes", "gauge", "Donated memory.", pool_.size());
  metric("emp_vmd_pool_locked", "gauge", "1 if the pool is locked in RAM.", pool_.locked() ? 1 : 0);
  metric("emp_vmd_leased_bytes", "gauge", "Memory held by leases.", leased);
  metric("emp_vmd_free_bytes", "gauge", "Memory available for new leases.", extents_.free_bytes());
  metric("emp_vmd_clients", "gauge", "Connected control sessions.", sessions_.size());
  metric("emp_vmd_leases_active", "gauge", "Leases attached to a client.", active);
  metric("emp_vmd_leases_orphaned", "gauge", "Leases in their grace period.", orphaned);
  metric("emp_vmd_data_connections", "gauge", "Open data-plane connections (tcp and verbs).",
         socket_server_->connection_count() + (exporter_ ? exporter_->connection_count() : 0));
  metric("emp_vmd_connections_total", "counter", "Control connections accepted.", counters_.connections_total);
  metric("emp_vmd_auth_failures_total", "counter", "Failed or missing authentications.", counters_.auth_failures_total);
  metric("emp_vmd_protocol_errors_total", "counter", "Malformed or unexpected messages.", counters_.protocol_errors_total);
  metric("emp_vmd_rejected_clients_total", "counter", "Clients refused by -c.", counters_.rejected_clients_total);
  metric("emp_vmd_leases_granted_total", "counter", "Leases granted.", counters_.leases_granted_total);
  metric("emp_vmd_leases_resumed_total", "counter", "Leases resumed after a reconnect.", counters_.leases_resumed_total);
  metric("emp_vmd_leases_expired_total", "counter", "Leases freed after the grace period.", counters_.leases_expired_total);
  metric("emp_vmd_leases_released_total", "counter", "Leases released by their client.", counters_.leases_released_total);
  metric("emp_vmd_data_connections_rejected_total", "counter", "Data connections with an invalid ticket.",
         counters_.data_connections_rejected_total + socket_server_->rejected_total());
  metric("emp_vmd_bytes_read_total", "counter", "Bytes clients read (reported by their heartbeats).",
         counters_.bytes_read_total);
  metric("emp_vmd_bytes_written_total", "counter", "Bytes clients wrote (reported by their heartbeats).",
         counters_.bytes_written_total);
  metric("emp_vmd_read_ops_total", "counter", "Read operations (reported by clients).", counters_.read_ops_total);
  metric("emp_vmd_write_ops_total", "counter", "Write operations (reported by clients).", counters_.write_ops_total);
  return out.str();
}

}  // namespace emp::vmd
