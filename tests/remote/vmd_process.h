// VmdProcess: runs a real `vmd` binary (path from the EMP_VMD_PATH compile definition)
// for integration tests: starts it on a free port (or a given one), learns the port
// from its start-up line, drains its stderr in a thread (kept for diagnostics), and
// stops it with SIGTERM (or SIGKILL to simulate a crash). Also the test-environment
// knobs: EMP_TEST_PROVIDER (tcp|shm|verbs), EMP_TEST_DEVICE (vmd -d), EMP_TEST_HOST.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/mem_path.h"
#include "net/fabric.h"

namespace emp::testing {

class VmdProcess {
 public:
  // Starts vmd with `args` (plus "-p 0" unless `port` is given). Returns nullptr and
  // sets *error when the binary is missing or does not come up.
  static std::unique_ptr<VmdProcess> start(const std::vector<std::string>& args, std::string* error,
                                           uint16_t port = 0);
  ~VmdProcess();

  uint16_t port() const noexcept { return port_; }
  pid_t pid() const noexcept { return pid_; }
  bool alive() const;
  // SIGTERM and wait; returns the exit status (-1 if it had to be killed).
  int stop();
  void kill_hard();  // SIGKILL, as a crash
  std::string log() const;

 private:
  VmdProcess() = default;
  void drain(int fd);
  pid_t pid_ = -1;
  uint16_t port_ = 0;
  std::thread reader_;
  mutable std::mutex mu_;
  std::string log_;
  bool exited_ = false;
  int status_ = 0;
};

const char* vmd_path();
// The provider the remote tests use (EMP_TEST_PROVIDER; default tcp).
net::Provider test_provider();
// vmd arguments selecting the device for test_provider() ("-d tcp" or "-d <EMP_TEST_DEVICE>", plus --bind).
std::vector<std::string> vmd_device_args();
// Multiplier for test timeouts on slow machines (EMP_TEST_TIME_SCALE; default 1).
int time_scale();
// The host clients use (EMP_TEST_HOST; default 127.0.0.1).
std::string test_host();
TierSpec remote_spec(uint16_t port, uint64_t mib);
// A key file with `key` in it (mode 600); removed at exit.
std::string write_key_file(const std::string& key);

}  // namespace emp::testing
