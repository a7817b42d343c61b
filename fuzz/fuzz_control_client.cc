// Fuzz target: a hostile donor against the client's control plane. Each input is
// everything a "vmd" sends back on one connection (Hello, AuthOk, grants, errors...);
// the client runs its handshake, asks for a lease, beats and releases. Every step must
// succeed or fail with ControlError / a Status, never crash or hang.
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdint>

#include "net/control_client.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 32768) return 0;
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) return 0;
  int buffer = 1 << 20;
  ::setsockopt(pair[1], SOL_SOCKET, SO_SNDBUF, &buffer, sizeof buffer);
  ::setsockopt(pair[0], SOL_SOCKET, SO_RCVBUF, &buffer, sizeof buffer);
  size_t done = 0;
  while (done < size) {
    ssize_t n = ::send(pair[1], data + done, size - done, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  ::shutdown(pair[1], SHUT_WR);  // then end of stream: no read waits for its timeout
  emp::net::ControlConfig config{"fuzz", 1, "", std::chrono::milliseconds(200)};
  try {
    auto client = emp::net::ControlClient::connect_for_testing(emp::UniqueFd(pair[0]), config);
    emp::net::ResumeTicket resume{7, {}};
    try {
      (void)client->lease(1 << 20, emp::net::Provider::kTcp, std::nullopt);
    } catch (const emp::net::ControlError&) {
    }
    try {
      (void)client->lease(1 << 20, emp::net::Provider::kShm, resume);
    } catch (const emp::net::ControlError&) {
    }
    (void)client->heartbeat({7, 1, 2, 3, 4});
    (void)client->release(7);
  } catch (const emp::net::ControlError&) {
  }
  ::close(pair[1]);
  return 0;
}
