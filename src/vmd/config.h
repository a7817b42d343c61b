// VmdConfig: the command line of the memory exporter (`vmd -m <MiB> -p <port> -d
// <device|tcp> ...`), parsed (with CLI11) and validated. parse_vmd_args() throws UsageError with a
// message naming the bad flag or value; vmd_usage() is the --help text. Pure.
#pragma once

#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace emp::vmd {

struct UsageError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

struct VmdConfig {
  uint64_t pool_bytes = 0;          // -m MiB (required)
  uint16_t port = 19675;            // -p
  std::string device = "tcp";       // -d: "tcp" or an RDMA device name (verbs)
  unsigned max_clients = 1024;      // -c
  int verbosity = 0;                // -v (repeatable)
  std::string bind_address;         // --bind; default: any with a key, loopback without
  bool bind_given = false;
  std::string auth_key_file;        // --auth-key-file
  bool insecure = false;            // --insecure
  std::string metrics_address;      // --metrics ADDR:PORT ("" = off)
  uint16_t metrics_port = 0;
  std::chrono::seconds grace{30};   // --grace SEC: how long a disconnected client's lease is kept
  std::chrono::seconds idle_timeout{60};  // --idle-timeout SEC: a silent client is disconnected
  bool enable_shm = true;           // --no-shm disables the same-host shm data plane
  bool help = false;
};

VmdConfig parse_vmd_args(const std::vector<std::string>& args);
std::string vmd_usage();

}  // namespace emp::vmd
