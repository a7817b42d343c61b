#include "net/control_client.h"

#include <sys/socket.h>

#include <algorithm>
#include <cstring>

#include "net/auth.h"
#include "net/socket.h"

namespace emp::net {
namespace {

Status read_frame(int fd, protocol::FrameHeader* header, std::vector<uint8_t>* payload, Deadline deadline,
                  UniqueFd* passed = nullptr) noexcept {
  uint8_t raw[sizeof(protocol::FrameHeader)];
  Status status = recv_all(fd, raw, deadline, passed);
  if (!status) return status;
  std::memcpy(header, raw, sizeof raw);
  if (protocol::check_header(*header) != protocol::HeaderCheck::kOk)
    return Status::error(EPROTO, "malformed control message from vmd");
  payload->resize(header->length);
  return recv_all(fd, *payload, deadline);
}

}  // namespace

std::unique_ptr<ControlClient> ControlClient::connect(const ControlConfig& config) {
  std::unique_ptr<ControlClient> client(new ControlClient());
  client->config_ = config;
  const std::string where = client->where();
  Deadline deadline = deadline_after(config.timeout);
  std::string error;
  if (config.local) {
    client->fd_ = local_connect(local_control_name(config.port), &error);
    if (!client->fd_.valid())
      throw ControlError(ECONNREFUSED, "cannot reach vmd at " + where + " through its local socket @" +
                                           local_control_name(config.port) + ": " + error +
                                           " (is it running on this host, without --no-shm?)");
    client->peer_ = "127.0.0.1";
  } else {
    client->fd_ = tcp_connect(config.host, config.port, deadline, &error);
    if (!client->fd_.valid()) {
      int code = error.find("refused") != std::string::npos ? ECONNREFUSED
                 : error.find("timed out") != std::string::npos ? ETIMEDOUT
                                                                 : EHOSTUNREACH;
      throw ControlError(code, "cannot connect to vmd at " + where + ": " + error);
    }
    client->peer_ = peer_address(client->fd_.get());
  }
  client->greet(deadline);
  return client;
}

std::unique_ptr<ControlClient> ControlClient::connect_for_testing(UniqueFd fd, const ControlConfig& config) {
  std::unique_ptr<ControlClient> client(new ControlClient());
  client->config_ = config;
  client->fd_ = std::move(fd);
  client->peer_ = "127.0.0.1";
  client->greet(deadline_after(config.timeout));
  return client;
}

void ControlClient::greet(Deadline deadline) {
  const ControlConfig& config = config_;
  const std::string where = this->where();

  protocol::FrameHeader header{};
  std::vector<uint8_t> payload;
  Status status = read_frame(fd_.get(), &header, &payload, deadline);
  if (!status) throw ControlError(EPROTO, "vmd at " + where + " did not greet: " + status.to_string());
  if (header.type == static_cast<uint16_t>(protocol::MessageType::kError)) throw_reply_error(header, payload, "Hello");
  auto hello = protocol::decode<protocol::Hello>(header, payload);
  if (!hello) throw ControlError(EPROTO, "vmd at " + where + " sent no Hello");
  if (hello->min_version > protocol::kVersion || hello->max_version < protocol::kVersion)
    throw ControlError(EPROTO, "vmd at " + where + " speaks protocol versions " + std::to_string(hello->min_version) +
                                   ".." + std::to_string(hello->max_version) + ", this client " +
                                   std::to_string(protocol::kVersion));
  hello_ = *hello;
  const bool required = hello->flags & protocol::kHelloAuthRequired;
  if (required && config.key.empty())
    throw ControlError(EACCES, "vmd at " + where + " requires an auth key (set EMP_AUTH_KEY or EMP_AUTH_KEY_FILE)");
  if (!required && !config.key.empty())
    throw ControlError(EACCES, "vmd at " + where +
                                   " does not authenticate (it has no auth key) but this client has one; "
                                   "refusing an unauthenticated donor");

  protocol::Auth auth{};
  random_bytes(auth.client_nonce);
  if (required) {
    Mac mac = auth_mac(config.key, kClientLabel, hello->server_nonce, auth.client_nonce);
    std::memcpy(auth.mac, mac.data(), mac.size());
  }
  status = exchange(protocol::encode(auth, ++sequence_), &header, &payload, config.timeout);
  if (!status) throw ControlError(status.code(), "vmd at " + where + ": authentication failed: " + status.to_string());
  if (header.type == static_cast<uint16_t>(protocol::MessageType::kError)) throw_reply_error(header, payload, "AuthOk");
  auto ok = protocol::decode<protocol::AuthOk>(header, payload);
  if (!ok) throw ControlError(EPROTO, "vmd at " + where + " answered authentication with an unexpected message");
  if (required) {
    Mac expected = auth_mac(config.key, kServerLabel, auth.client_nonce, hello->server_nonce);
    if (!constant_time_equal(expected, ok->mac))
      throw ControlError(EACCES, "vmd at " + where + " failed to prove it knows the auth key");
  }
}

void ControlClient::throw_reply_error(const protocol::FrameHeader& header, const std::vector<uint8_t>& payload,
                                      const char* expecting) const {
  if (auto error = protocol::decode<protocol::Error>(header, payload))
    throw ControlError(static_cast<int>(error->code), "vmd at " + where() + ": " + protocol::error_text(*error));
  throw ControlError(EPROTO, "vmd at " + where() + " sent " +
                                 protocol::to_string(static_cast<protocol::MessageType>(header.type)) + ", expected " +
                                 expecting);
}

Status ControlClient::exchange(const std::vector<uint8_t>& request, protocol::FrameHeader* header,
                               std::vector<uint8_t>* payload, std::chrono::milliseconds timeout) noexcept {
  Deadline deadline = deadline_after(timeout);
  Status status = send_all(fd_.get(), request, deadline);
  if (!status) return status;
  return read_frame(fd_.get(), header, payload, deadline, &passed_fd_);
}

UniqueFd ControlClient::take_passed_fd() noexcept {
  std::lock_guard lock(mu_);
  return std::move(passed_fd_);
}

protocol::LeaseGrant ControlClient::lease(uint64_t size, Provider provider, const std::optional<ResumeTicket>& resume) {
  std::lock_guard lock(mu_);
  protocol::LeaseRequest request{};
  request.size_bytes = size;
  request.provider = static_cast<uint16_t>(to_wire(provider));
  if (resume) {
    request.flags = protocol::kLeaseResume;
    request.lease_id = resume->lease_id;
    std::memcpy(request.resume_token, resume->token, sizeof request.resume_token);
  }
  protocol::FrameHeader header{};
  std::vector<uint8_t> payload;
  // vmd allocates the lease's pages before it answers (~0.4 s per GiB here, longer
  // behind other clients' requests on a loaded machine): allow for it.
  auto timeout = std::max<std::chrono::milliseconds>(config_.timeout, std::chrono::seconds(10)) +
                 std::chrono::seconds(2) * static_cast<int64_t>(size >> 30);
  Status status = exchange(protocol::encode(request, ++sequence_), &header, &payload, timeout);
  if (!status) throw ControlError(status.code(), "vmd at " + where() + ": lease request failed: " + status.to_string());
  if (header.type == static_cast<uint16_t>(protocol::MessageType::kError)) throw_reply_error(header, payload, "LeaseGrant");
  auto grant = protocol::decode<protocol::LeaseGrant>(header, payload);
  if (!grant) throw_reply_error(header, payload, "LeaseGrant");
  if (grant->size_bytes < size || grant->address_length > protocol::kMaxAddressBytes)
    throw ControlError(EPROTO, "vmd at " + where() + " sent an inconsistent lease grant");
  if (provider == Provider::kShm && !passed_fd_.valid())
    throw ControlError(EPROTO, "vmd at " + where() + " granted a shared-memory lease without its memory file");
  return *grant;
}

Status ControlClient::heartbeat(const protocol::Heartbeat& beat) noexcept {
  std::lock_guard lock(mu_);
  protocol::FrameHeader header{};
  std::vector<uint8_t> payload;
  Status status;
  try {
    status = exchange(protocol::encode(beat, ++sequence_), &header, &payload, config_.timeout);
  } catch (...) {
    return Status::error(ENOMEM, "heartbeat");
  }
  if (!status) return status;
  if (!protocol::decode<protocol::HeartbeatAck>(header, payload)) return Status::error(EPROTO, "heartbeat refused by vmd");
  return Status::ok();
}

Status ControlClient::release(uint64_t lease_id) noexcept {
  std::lock_guard lock(mu_);
  protocol::FrameHeader header{};
  std::vector<uint8_t> payload;
  Status status;
  try {
    status = exchange(protocol::encode(protocol::Release{lease_id}, ++sequence_), &header, &payload,
                      std::min(config_.timeout, std::chrono::milliseconds(2000)));
  } catch (...) {
    return Status::error(ENOMEM, "release");
  }
  if (!status) return status;
  if (!protocol::decode<protocol::ReleaseOk>(header, payload)) return Status::error(EPROTO, "release refused by vmd");
  return Status::ok();
}

}  // namespace emp::net
