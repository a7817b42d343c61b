// Shared-key challenge-response for the control plane: HMAC-SHA256 (OpenSSL libcrypto)
// over both sides' nonces, so the key itself never crosses the network and each side
// proves it knows the key. Also the random nonces/tokens/keys the protocol needs and a
// constant-time comparison. Pure functions; thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "net/protocol.h"

namespace emp::net {

using Mac = std::array<uint8_t, protocol::kMacBytes>;

// HMAC-SHA256(key, label || a || b).
Mac auth_mac(std::string_view key, std::string_view label, std::span<const uint8_t> a, std::span<const uint8_t> b);
inline constexpr std::string_view kClientLabel = "EMP-AUTH-C1";
inline constexpr std::string_view kServerLabel = "EMP-AUTH-S1";

// Cryptographically random bytes (getrandom); aborts only if the kernel cannot supply them.
void random_bytes(std::span<uint8_t> out) noexcept;
uint64_t random_u64() noexcept;

bool constant_time_equal(std::span<const uint8_t> a, std::span<const uint8_t> b) noexcept;

// Reads a key file (trailing whitespace stripped); throws std::runtime_error naming the
// file when it is missing, unreadable or empty. Warns when it is group/world readable.
std::string read_key_file(const std::string& path);

}  // namespace emp::net
