#include "vmd/config.h"

#include <CLI/CLI.hpp>

#include <charconv>

#include "net/socket.h"

namespace emp::vmd {
namespace {

uint64_t parse_number(const std::string& flag, const std::string& text, uint64_t min, uint64_t max) {
  uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty())
    throw UsageError(flag + ": '" + text + "' is not a number");
  if (value < min || value > max)
    throw UsageError(flag + ": " + text + " is out of range [" + std::to_string(min) + ", " + std::to_string(max) + "]");
  return value;
}

}  // namespace

std::string vmd_usage() {
  return R"(usage: vmd -m <MiB> [-p <port>] [-d <device|tcp>] [options]

EMP memory exporter: donates <MiB> of this node's DRAM to EMP clients over libfabric.

  -m MiB               pool size in MiB (allocated and locked at start)        [required]
  -p PORT              control port (0: any free port, printed at start)     [19675]
  -d DEVICE            'tcp', or an RDMA device (InfiniBand/RoCE/iWARP, e.g.
                       mlx5_0, rxe0) served with the libfabric verbs provider [tcp]
  -c N                 maximum concurrent clients (a forked child is one too)  [1024]
  -v                   verbose (repeat for debug)
  --bind ADDR          listen address (default: all addresses when an auth key
                       is configured, 127.0.0.1 otherwise)
  --auth-key-file FILE shared key; clients prove they know it (HMAC-SHA256
                       challenge-response, the key never crosses the network)
  --insecure           allow a non-loopback --bind without an auth key
  --metrics ADDR:PORT  serve Prometheus text metrics over HTTP
  --grace SEC          keep the lease of a client whose connection broke (not
                       closed: a closed one frees its lease) so it can
                       resume it                                               [30]
  --idle-timeout SEC   disconnect a client silent for this long                [60]
  --no-shm             no local control socket: same-host clients use tcp
                       instead of the lease's shared-memory file
  -h, --help           this text

SIGTERM or SIGINT shuts vmd down cleanly.
)";
}

VmdConfig parse_vmd_args(const std::vector<std::string>& args) {
  VmdConfig config;
  CLI::App app("vmd");
  app.set_help_flag();  // vmd_usage() is the help text
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);  // a later value wins
  app.add_flag("-h,--help", config.help);
  uint64_t pool_mib = 0;
  CLI::Option* pool = app.add_option("-m", pool_mib)->check(CLI::Range(uint64_t{1}, uint64_t{1} << 24));
  unsigned port = config.port;
  app.add_option("-p", port)->check(CLI::Range(0u, 65535u));
  app.add_option("-d", config.device)->check([](const std::string& device) {
    return device.empty() ? std::string("needs a device name or 'tcp'") : std::string();
  });
  app.add_option("-c", config.max_clients)->check(CLI::Range(1u, 4096u));
  app.add_flag("-v", config.verbosity);  // repeatable, also as -vv
  CLI::Option* bind = app.add_option("--bind", config.bind_address);
  app.add_option("--auth-key-file", config.auth_key_file);
  app.add_flag("--insecure", config.insecure);
  std::string metrics;
  app.add_option("--metrics", metrics);
  uint64_t grace = static_cast<uint64_t>(config.grace.count()), idle = static_cast<uint64_t>(config.idle_timeout.count());
  app.add_option("--grace", grace)->check(CLI::Range(uint64_t{0}, uint64_t{86400}));
  app.add_option("--idle-timeout", idle)->check(CLI::Range(uint64_t{1}, uint64_t{86400}));
  bool no_shm = false;
  app.add_flag("--no-shm", no_shm);
  try {
    std::vector<std::string> reversed(args.rbegin(), args.rend());  // CLI11 takes them last first
    app.parse(reversed);
  } catch (const CLI::ParseError& e) {
    throw UsageError(std::string(e.what()) + " (see vmd --help)");
  }
  if (config.help) return config;
  if (pool->count() == 0) throw UsageError("-m <MiB> (the pool size) is required");
  config.pool_bytes = pool_mib << 20;
  config.port = static_cast<uint16_t>(port);
  config.bind_given = bind->count() > 0;
  config.grace = std::chrono::seconds(grace);
  config.idle_timeout = std::chrono::seconds(idle);
  config.enable_shm = !no_shm;
  if (!metrics.empty()) {
    std::string port_text;
    if (!net::split_host_port(metrics, &config.metrics_address, &port_text))
      throw UsageError("--metrics: expected ADDR:PORT, got '" + metrics + "'");
    config.metrics_port = static_cast<uint16_t>(parse_number("--metrics port", port_text, 1, 65535));
  }
  return config;
}

}  // namespace emp::vmd
