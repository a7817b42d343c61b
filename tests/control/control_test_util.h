// Helpers for the control-plane integration tests: an Engine with a file tier served by
// a ControlServer (optionally with a dram:auto controller that only steps when told),
// raw socket I/O, memory touching, and running the `emp` binary.
#pragma once

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "control/control_client.h"
#include "control/control_server.h"
#include "control/dram_auto.h"
#include "testing/engine_fixture.h"

namespace emp::control {

struct ServedEngine {
  testing::TempFiles files;
  std::unique_ptr<core::Engine> engine;
  std::unique_ptr<DramAutoController> dram_auto;
  std::unique_ptr<ControlServer> server;  // destroyed first
};

// Returns false with *skip set when userfaultfd is unavailable.
inline bool make_served_engine(ServedEngine& served, uint64_t budget, bool with_auto, std::string* skip) {
  testing::EngineSetup setup;
  setup.tier = testing::TierKind::kFile;
  setup.budget = budget;
  setup.pool_bytes = 128 << 20;
  served.engine = testing::make_engine(setup, skip, &served.files.files);
  if (!served.engine) return false;
  ControlInfo info;
  info.mem_path = "dram:" + std::to_string(budget >> 20) + "|test";
  if (with_auto) {
    DramAutoConfig config;
    config.start_thread = false;
    served.dram_auto = DramAutoController::start(*served.engine, config);
    info.dram_auto = true;
    info.dram_auto_controller = served.dram_auto.get();
  }
  served.server = ControlServer::start(*served.engine, info);
  return true;
}

#define EMP_SERVED_ENGINE_OR_SKIP(var, budget, with_auto)                                        \
  ::emp::control::ServedEngine var;                                                        \
  {                                                                                        \
    std::string emp_skip_;                                                                 \
    if (!::emp::control::make_served_engine(var, (budget), (with_auto), &emp_skip_))  \
      GTEST_SKIP() << emp_skip_;                                                           \
  }

inline void touch(void* memory, size_t bytes) {
  auto* bytes_ptr = static_cast<volatile char*>(memory);
  for (size_t offset = 0; offset < bytes; offset += 4096) bytes_ptr[offset] = static_cast<char>(offset >> 12);
}

inline int connect_raw(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un address {};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path.c_str(), sizeof address.sun_path - 1);
  EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address), 0) << std::strerror(errno);
  return fd;
}

// Reads until EOF or `timeout`.
inline std::string read_all(int fd, std::chrono::milliseconds timeout) {
  std::string text;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
    if (left <= 0) break;
    struct pollfd pfd {fd, POLLIN, 0};
    if (::poll(&pfd, 1, static_cast<int>(left)) <= 0) break;
    char buffer[4096];
    ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
    if (n <= 0) break;
    text.append(buffer, static_cast<size_t>(n));
  }
  return text;
}

}  // namespace emp::control
