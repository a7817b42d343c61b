#include "vmd/config.h"

#include <charconv>

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
  bool have_pool = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    auto value = [&](const std::string& flag) -> std::string {
      if (i + 1 >= args.size()) throw UsageError(flag + " needs a value");
      return args[++i];
    };
    if (arg == "-h" || arg == "--help") {
      config.help = true;
    } else if (arg == "-m") {
      config.pool_bytes = parse_number("-m", value("-m"), 1, 1ULL << 24) << 20;
      have_pool = true;
    } else if (arg == "-p") {
      config.port = static_cast<uint16_t>(parse_number("-p", value("-p"), 0, 65535));
    } else if (arg == "-d") {
      config.device = value("-d");
      if (config.device.empty()) throw UsageError("-d needs a device name or 'tcp'");
    } else if (arg == "-c") {
      config.max_clients = static_cast<unsigned>(parse_number("-c", value("-c"), 1, 4096));
    } else if (arg == "-v" || arg == "-vv") {
      config.verbosity += arg == "-vv" ? 2 : 1;
    } else if (arg == "--bind") {
      config.bind_address = value("--bind");
      config.bind_given = true;
    } else if (arg == "--auth-key-file") {
      config.auth_key_file = value("--auth-key-file");
    } else if (arg == "--insecure") {
      config.insecure = true;
    } else if (arg == "--metrics") {
      std::string text = value("--metrics");
      size_t colon = text.rfind(':');
      if (colon == std::string::npos) throw UsageError("--metrics: expected ADDR:PORT, got '" + text + "'");
      config.metrics_address = text.substr(0, colon);
      if (config.metrics_address.size() >= 2 && config.metrics_address.front() == '[')
        config.metrics_address = config.metrics_address.substr(1, config.metrics_address.size() - 2);
      config.metrics_port = static_cast<uint16_t>(parse_number("--metrics port", text.substr(colon + 1), 1, 65535));
    } else if (arg == "--grace") {
      config.grace = std::chrono::seconds(parse_number("--grace", value("--grace"), 0, 86400));
    } else if (arg == "--idle-timeout") {
      config.idle_timeout = std::chrono::seconds(parse_number("--idle-timeout", value("--idle-timeout"), 1, 86400));
    } else if (arg == "--no-shm") {
      config.enable_shm = false;
    } else {
      throw UsageError("unknown argument '" + arg + "' (see vmd --help)");
    }
  }
  if (config.help) return config;
  if (!have_pool) throw UsageError("-m <MiB> (the pool size) is required");
  return config;
}

}  // namespace emp::vmd
