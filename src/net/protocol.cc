#include "net/protocol.h"

#include <algorithm>

namespace emp::net::protocol {

const char* to_string(MessageType type) noexcept {
  switch (type) {
    case MessageType::kHello: return "Hello";
    case MessageType::kAuth: return "Auth";
    case MessageType::kAuthOk: return "AuthOk";
    case MessageType::kLeaseRequest: return "LeaseRequest";
    case MessageType::kLeaseGrant: return "LeaseGrant";
    case MessageType::kHeartbeat: return "Heartbeat";
    case MessageType::kHeartbeatAck: return "HeartbeatAck";
    case MessageType::kRelease: return "Release";
    case MessageType::kReleaseOk: return "ReleaseOk";
    case MessageType::kError: return "Error";
  }
  return "unknown";
}

size_t payload_size(MessageType type) noexcept {
  switch (type) {
    case MessageType::kHello: return sizeof(Hello);
    case MessageType::kAuth: return sizeof(Auth);
    case MessageType::kAuthOk: return sizeof(AuthOk);
    case MessageType::kLeaseRequest: return sizeof(LeaseRequest);
    case MessageType::kLeaseGrant: return sizeof(LeaseGrant);
    case MessageType::kHeartbeat: return sizeof(Heartbeat);
    case MessageType::kHeartbeatAck: return sizeof(HeartbeatAck);
    case MessageType::kRelease: return sizeof(Release);
    case MessageType::kReleaseOk: return sizeof(ReleaseOk);
    case MessageType::kError: return sizeof(Error);
  }
  return 0;
}

const char* to_string(HeaderCheck check) noexcept {
  switch (check) {
    case HeaderCheck::kOk: return "ok";
    case HeaderCheck::kBadMagic: return "bad magic";
    case HeaderCheck::kBadVersion: return "unsupported protocol version";
    case HeaderCheck::kBadType: return "unknown message type";
    case HeaderCheck::kBadLength: return "wrong payload length";
  }
  return "?";
}

HeaderCheck check_header(const FrameHeader& header) noexcept {
  if (header.magic != kMagic) return HeaderCheck::kBadMagic;
  if (header.version != kVersion) return HeaderCheck::kBadVersion;
  size_t expected = payload_size(static_cast<MessageType>(header.type));
  if (expected == 0) return HeaderCheck::kBadType;
  if (header.length != expected || header.length > kMaxPayload) return HeaderCheck::kBadLength;
  return HeaderCheck::kOk;
}

std::optional<FrameHeader> peek_header(std::span<const uint8_t> bytes) noexcept {
  if (bytes.size() < sizeof(FrameHeader)) return std::nullopt;
  FrameHeader header;
  std::memcpy(&header, bytes.data(), sizeof header);
  return header;
}

Error make_error(int code, std::string_view text) noexcept {
  Error error{};
  error.code = static_cast<uint32_t>(code);
  size_t n = std::min(text.size(), kMaxErrorText);
  std::memcpy(error.text, text.data(), n);
  error.text_length = static_cast<uint16_t>(n);
  return error;
}

std::string error_text(const Error& error) {
  size_t n = std::min<size_t>(error.text_length, kMaxErrorText);
  return std::string(error.text, n);
}

}  // namespace emp::net::protocol
