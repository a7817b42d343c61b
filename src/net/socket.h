// Small blocking socket helpers for the control plane: resolve + connect with a
// deadline, listen, vmd's same-host (abstract Unix) control socket, and whole-message
// send/receive with a deadline (poll-based, so nothing blocks forever), optionally
// passing a file descriptor. Used by the control-plane client and by tests; vmd drives its own
// non-blocking sockets but shares resolve/listen. Stateless; thread-safe.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include <sys/uio.h>

#include "common/status.h"
#include "common/unique_fd.h"

namespace emp::net {

using Clock = std::chrono::steady_clock;
using Deadline = Clock::time_point;
inline Deadline deadline_after(std::chrono::milliseconds ms) { return Clock::now() + ms; }
int remaining_ms(Deadline deadline) noexcept;  // >= 0

// Connects to host:port (IPv4, IPv6 or a name). On failure returns an invalid fd and
// sets *error to e.g. "Connection refused".
UniqueFd tcp_connect(const std::string& host, uint16_t port, Deadline deadline, std::string* error);
// Listens on address:port (address "" = any IPv4/IPv6); port 0 picks one. Throws.
UniqueFd tcp_listen(const std::string& address, uint16_t port, int backlog = 64);
// Splits "ADDR:PORT" at its last colon into the address (brackets of an IPv6 address
// removed) and the port's text, which the caller checks; false when there is no colon.
bool split_host_port(const std::string& text, std::string* address, std::string* port);
uint16_t local_port(int fd) noexcept;
// The numeric peer address of a connected socket ("127.0.0.1", "::1").
std::string peer_address(int fd);
// True when the address string names a loopback address (127/8, ::1, "localhost").
bool is_loopback_address(const std::string& address);

// Moves every byte of iov[0..count) — sendmsg when `sending`, else recvmsg with
// MSG_WAITALL — through partial transfers, blocking (bounded by the socket's
// timeouts). Returns the bytes moved; when that is short, *error says why (ECONNRESET
// at end of stream, ETIMEDOUT for a socket timeout). `iov` is consumed.
size_t transfer_iov(int fd, iovec* iov, size_t count, bool sending, int* error) noexcept;

// True when `host` resolves to an address of this machine: loopback, or an address a
// socket here can bind to.
bool is_local_host(const std::string& host);

// vmd's same-host control socket: an abstract Unix socket (no file to clean up, scoped
// to the network namespace, like the TCP port it is named after).
std::string local_control_name(uint16_t port);
UniqueFd local_listen(const std::string& name, int backlog = 64);  // throws
UniqueFd local_connect(const std::string& name, std::string* error);

// Sends `bytes`, attaching `pass_fd` (SCM_RIGHTS) to the first byte when it is >= 0.
Status send_all(int fd, std::span<const uint8_t> bytes, Deadline deadline, int pass_fd = -1) noexcept;
// Receives exactly `bytes` (ECONNRESET on EOF). A descriptor passed along is stored in
// *received when given (replacing an earlier one), otherwise closed.
Status recv_all(int fd, std::span<uint8_t> bytes, Deadline deadline, UniqueFd* received = nullptr) noexcept;

}  // namespace emp::net
