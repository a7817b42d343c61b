// Fuzz target: a hostile client on vmd's tcp data plane. One SocketServer serves a
// 1 MiB lease (id 1) whose ticket is 16 bytes of 0x5a; each input is the byte stream
// of one data connection (DataConnect, then requests and write payloads), served by
// the server's own connection loop. Every request must be answered, refused or end the
// connection; nothing may reach outside the lease.
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <thread>

#include "common/log.h"
#include "vmd/lease_memory.h"
#include "vmd/socket_server.h"

namespace {

emp::vmd::SocketServer& server() {
  static std::unique_ptr<emp::vmd::SocketServer> instance = [] {
    emp::log::set_level(emp::log::Level::kError);
    auto made = std::make_unique<emp::vmd::SocketServer>("127.0.0.1");
    uint8_t ticket[emp::net::protocol::kTokenBytes];
    std::memset(ticket, 0x5a, sizeof ticket);
    made->allow(1, ticket, 1, emp::vmd::LeaseMemory::create(1 << 20));
    return made;
  }();
  return *instance;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 65536) return 0;
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) return 0;
  // The client: writes the input, then reads every reply until vmd's side closes.
  std::thread client([fd = pair[1], data, size] {
    size_t done = 0;
    while (done < size) {
      ssize_t n = ::send(fd, data + done, size - done, MSG_NOSIGNAL);
      if (n <= 0) break;
      done += static_cast<size_t>(n);
    }
    ::shutdown(fd, SHUT_WR);
    char sink[65536];
    while (::recv(fd, sink, sizeof sink, 0) > 0) {
    }
    ::close(fd);
  });
  server().serve_for_testing(emp::UniqueFd(pair[0]));
  client.join();
  return 0;
}
