// The EMP control-plane wire protocol (version 1), spoken over a TCP stream (or vmd's
// same-host Unix socket) between a client (the remote tier) and vmd, plus the first
// message of a data connection and the socket data plane's requests and replies. docs/protocol.md is the prose description.
//
// Every message is a 16-byte FrameHeader followed by a fixed-size payload whose layout
// is a plain struct below (static_asserted size and offsets, little-endian on the wire;
// the build refuses big-endian hosts). Parsing never trusts a length: decode() checks
// the magic, version, type and exact payload size before copying bytes out, and every
// variable-length field inside a payload carries its own bound-checked length.
// Pure functions and value types; thread-safe.
#pragma once

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace emp::net::protocol {

static_assert(std::endian::native == std::endian::little, "the wire format is little-endian; add byte swapping");

inline constexpr uint32_t kMagic = 0x43504d45;      // "EMPC"
inline constexpr uint32_t kDataMagic = 0x44504d45;  // "EMPD"
inline constexpr uint16_t kVersion = 1;
inline constexpr size_t kMaxPayload = 1024;  // every v1 payload is smaller
inline constexpr size_t kNonceBytes = 32;
inline constexpr size_t kMacBytes = 32;
inline constexpr size_t kTokenBytes = 16;
inline constexpr size_t kMaxAddressBytes = 128;
inline constexpr size_t kMaxErrorText = 200;

enum class MessageType : uint16_t {
  kHello = 1,         // vmd -> client, first message on every connection
  kAuth = 2,          // client -> vmd
  kAuthOk = 3,        // vmd -> client
  kLeaseRequest = 4,  // client -> vmd (new lease or resume)
  kLeaseGrant = 5,    // vmd -> client
  kHeartbeat = 6,     // client -> vmd (carries the client's data-plane counters)
  kHeartbeatAck = 7,  // vmd -> client
  kRelease = 8,       // client -> vmd
  kReleaseOk = 9,     // vmd -> client
  kError = 10,        // vmd -> client, then vmd closes the connection
};
const char* to_string(MessageType type) noexcept;

// Data-plane providers, as bits in Hello::providers and as values in LeaseRequest.
enum class ProviderId : uint16_t { kTcp = 1, kVerbs = 2, kShm = 4 };

struct FrameHeader {
  uint32_t magic;
  uint16_t version;
  uint16_t type;      // MessageType
  uint32_t length;    // payload bytes that follow
  uint32_t sequence;  // echoed in the reply
};
static_assert(sizeof(FrameHeader) == 16);
static_assert(offsetof(FrameHeader, type) == 6 && offsetof(FrameHeader, length) == 8);

inline constexpr uint16_t kHelloAuthRequired = 1;

struct Hello {
  uint16_t min_version;
  uint16_t max_version;
  uint16_t flags;      // kHelloAuthRequired
  uint16_t providers;  // ProviderId bits this vmd serves
  uint8_t server_nonce[kNonceBytes];
  uint64_t pool_bytes;
  uint64_t free_bytes;
};
static_assert(sizeof(Hello) == 56 && offsetof(Hello, server_nonce) == 8 && offsetof(Hello, pool_bytes) == 40);

// mac = HMAC-SHA256(key, "EMP-AUTH-C1" || server_nonce || client_nonce); zeros without a key.
struct Auth {
  uint8_t client_nonce[kNonceBytes];
  uint8_t mac[kMacBytes];
};
static_assert(sizeof(Auth) == 64);

// mac = HMAC-SHA256(key, "EMP-AUTH-S1" || client_nonce || server_nonce); zeros without a key.
struct AuthOk {
  uint8_t mac[kMacBytes];
};
static_assert(sizeof(AuthOk) == 32);

inline constexpr uint32_t kLeaseResume = 1;

struct LeaseRequest {
  uint64_t size_bytes;
  uint16_t provider;  // ProviderId the client will use for the data plane
  uint16_t reserved;
  uint32_t flags;     // kLeaseResume: lease_id and resume_token name a lease to resume
  uint64_t lease_id;
  uint8_t resume_token[kTokenBytes];
};
static_assert(sizeof(LeaseRequest) == 40 && offsetof(LeaseRequest, lease_id) == 16);

inline constexpr uint16_t kGrantResumed = 1;

struct LeaseGrant {
  uint64_t lease_id;
  uint64_t size_bytes;
  uint64_t remote_base;  // address of lease byte 0 in RMA requests (0 in offset-addressed providers)
  uint64_t mr_key;       // registration key of this lease only
  uint8_t resume_token[kTokenBytes];
  uint8_t ticket[kTokenBytes];  // goes into the data connection's private data
  uint16_t provider;
  uint16_t flags;        // kGrantResumed
  uint16_t data_port;    // tcp, verbs: the listening port of the data plane
  uint16_t address_length;  // unused (0); shm passes the lease's memory file with the grant
  uint8_t address[kMaxAddressBytes];
};
static_assert(sizeof(LeaseGrant) == 200 && offsetof(LeaseGrant, ticket) == 48 && offsetof(LeaseGrant, address) == 72);

struct Heartbeat {
  uint64_t lease_id;
  uint64_t bytes_read;  // cumulative, as seen by the client (one-sided RMA is invisible to vmd)
  uint64_t bytes_written;
  uint64_t read_ops;
  uint64_t write_ops;
};
static_assert(sizeof(Heartbeat) == 40);

struct HeartbeatAck {
  uint64_t lease_id;
};
static_assert(sizeof(HeartbeatAck) == 8);

struct Release {
  uint64_t lease_id;
};
static_assert(sizeof(Release) == 8);

struct ReleaseOk {
  uint64_t lease_id;
};
static_assert(sizeof(ReleaseOk) == 8);

struct Error {
  uint32_t code;  // an errno value
  uint16_t text_length;
  uint16_t reserved;
  char text[kMaxErrorText];
};
static_assert(sizeof(Error) == 208);

// The first message of a data connection: the private data of a verbs connection
// request (it must fit the 55 bytes verbs allows), the first bytes on a socket one.
struct DataConnect {
  uint32_t magic;  // kDataMagic
  uint16_t version;
  uint16_t reserved;
  uint64_t lease_id;
  uint8_t ticket[kTokenBytes];
};
static_assert(sizeof(DataConnect) == 32 && sizeof(DataConnect) <= 55);

// The socket data plane (tcp). A client opens a TCP connection to the grant's
// data_port and sends DataConnect; vmd answers DataAccept (status 0, or an errno and
// the connection closes). Then each DataRequest gets exactly one DataReply, in order;
// a write's bytes follow its request, a successful read's bytes follow its reply. A
// reply with a non-zero status is the last one: vmd closes the connection (after a bad
// request the stream cannot be trusted). Requests may be pipelined.
inline constexpr uint32_t kMaxDataTransfer = 4U << 20;
enum class DataOp : uint32_t { kRead = 1, kWrite = 2 };

struct DataAccept {
  uint32_t magic;   // kDataMagic
  uint32_t status;  // 0 or an errno value
  uint64_t lease_bytes;
};
static_assert(sizeof(DataAccept) == 16);

struct DataRequest {
  uint32_t op;      // DataOp
  uint32_t length;  // <= kMaxDataTransfer
  uint64_t offset;  // within the lease; offset + length <= lease size
};
static_assert(sizeof(DataRequest) == 16 && offsetof(DataRequest, offset) == 8);

struct DataReply {
  uint32_t status;  // 0 or an errno value
  uint32_t length;  // bytes that follow (reads)
};
static_assert(sizeof(DataReply) == 8);

template <typename T>
struct TypeOf;
#define EMP_PROTOCOL_TYPE(T, V) \
  template <>                   \
  struct TypeOf<T> {            \
    static constexpr MessageType value = MessageType::V; \
  }
EMP_PROTOCOL_TYPE(Hello, kHello);
EMP_PROTOCOL_TYPE(Auth, kAuth);
EMP_PROTOCOL_TYPE(AuthOk, kAuthOk);
EMP_PROTOCOL_TYPE(LeaseRequest, kLeaseRequest);
EMP_PROTOCOL_TYPE(LeaseGrant, kLeaseGrant);
EMP_PROTOCOL_TYPE(Heartbeat, kHeartbeat);
EMP_PROTOCOL_TYPE(HeartbeatAck, kHeartbeatAck);
EMP_PROTOCOL_TYPE(Release, kRelease);
EMP_PROTOCOL_TYPE(ReleaseOk, kReleaseOk);
EMP_PROTOCOL_TYPE(Error, kError);
#undef EMP_PROTOCOL_TYPE

// Expected payload size of a message type; 0 for an unknown type.
size_t payload_size(MessageType type) noexcept;

// Encodes header + payload into a contiguous byte vector.
template <typename T>
std::vector<uint8_t> encode(const T& payload, uint32_t sequence = 0) {
  FrameHeader header{kMagic, kVersion, static_cast<uint16_t>(TypeOf<T>::value), sizeof(T), sequence};
  std::vector<uint8_t> bytes(sizeof header + sizeof(T));
  std::memcpy(bytes.data(), &header, sizeof header);
  std::memcpy(bytes.data() + sizeof header, &payload, sizeof(T));
  return bytes;
}

enum class HeaderCheck { kOk, kBadMagic, kBadVersion, kBadType, kBadLength };
const char* to_string(HeaderCheck check) noexcept;
// Validates a received header (magic, version, known type, exact payload length).
HeaderCheck check_header(const FrameHeader& header) noexcept;
// Reads a header from the first 16 bytes of `bytes` (nullopt if shorter).
std::optional<FrameHeader> peek_header(std::span<const uint8_t> bytes) noexcept;

// Copies the payload of a validated frame into T; nullopt if the type or size differs.
template <typename T>
std::optional<T> decode(const FrameHeader& header, std::span<const uint8_t> payload) noexcept {
  if (header.type != static_cast<uint16_t>(TypeOf<T>::value) || header.length != sizeof(T) ||
      payload.size() != sizeof(T))
    return std::nullopt;
  T value;
  std::memcpy(&value, payload.data(), sizeof(T));
  return value;
}

// Builds an Error payload (text truncated to kMaxErrorText).
Error make_error(int code, std::string_view text) noexcept;
// The text of an Error, with its length clamped to the field.
std::string error_text(const Error& error);

}  // namespace emp::net::protocol
