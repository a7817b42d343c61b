// emp-transport-bench: one-sided read latency (p50/p99) and throughput of the libfabric
// transport (tcp, shm, and verbs when a device is given) for 4 KiB / 64 KiB / 2 MiB,
// next to a plain TCP socket request/response floor measured in the same run against
// the same donor process. The donor (an Exporter with 64 MiB exported plus a socket
// server) runs in a forked child, so every number crosses a process boundary.
//
//   emp-transport-bench [--iterations N] [--providers tcp,shm] [--device DEV --host ADDR]
//                       [--depth D] [--load] [--json]
#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "net/channel.h"
#include "net/exporter.h"
#include "net/socket.h"

using namespace emp;
using namespace emp::net;
using Micros = std::chrono::duration<double, std::micro>;

namespace {

constexpr size_t kExported = 64 << 20;

struct DonorInfo {
  uint16_t data_port;
  uint16_t socket_port;
  uint64_t tcp_key, shm_key, tcp_base, shm_base;
  char shm_name[128];
  char error[256];
};

struct Args {
  int iterations = 2000;
  std::vector<Provider> providers = {Provider::kTcp, Provider::kShm};
  std::string device;
  std::string host = "127.0.0.1";
  int depth = 16;
  bool load = false;
  bool json = false;
};

// The donor: exports memory over libfabric and serves the same bytes over a socket.
[[noreturn]] void run_donor(int pipe_fd, const Args& args) {
  DonorInfo info{};
  try {
    static std::vector<char> memory(kExported, 7);
    ExporterConfig config;
    config.provider = args.device.empty() ? Provider::kTcp : Provider::kVerbs;
    config.device = args.device;
    config.bind_address = args.host;
    auto exporter = Exporter::open(config);
    auto exported = exporter->export_memory(memory.data(), memory.size());
    exporter->shm_client_attached();
    UniqueFd listener = tcp_listen(args.host, 0);
    info.data_port = exporter->data_port();
    info.socket_port = local_port(listener.get());
    info.tcp_key = exported.primary.key();
    info.tcp_base = exporter->remote_base(config.provider, memory.data());
    if (exporter->has_shm()) {
      info.shm_key = exported.shm.key();
      info.shm_base = exporter->remote_base(Provider::kShm, memory.data());
      std::memcpy(info.shm_name, exporter->shm_name().data(), std::min<size_t>(127, exporter->shm_name().size()));
    }
    (void)!::write(pipe_fd, &info, sizeof info);
    // Socket floor server: request = {offset, length}, reply = the bytes.
    std::thread sockets([&] {
      while (true) {
        int fd = ::accept(listener.get(), nullptr, nullptr);
        if (fd < 0) return;
        std::thread([fd] {
          int one = 1;
          ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          uint64_t request[2];
          while (recv_all(fd, {reinterpret_cast<uint8_t*>(request), sizeof request},
                          deadline_after(std::chrono::hours(1))).is_ok()) {
            if (request[0] + request[1] > kExported) break;
            if (!send_all(fd, {reinterpret_cast<const uint8_t*>(memory.data() + request[0]), request[1]},
                          deadline_after(std::chrono::seconds(10))).is_ok())
              break;
          }
          ::close(fd);
        }).detach();
      }
    });
    // Serve connection requests until the parent closes the pipe.
    while (true) {
      exporter->process_events([](std::span<const uint8_t>) { return uint64_t{1}; });
      pollfd pfds[2] = {{pipe_fd, POLLIN, 0}, {exporter->event_fd(), POLLIN, 0}};
      ::poll(pfds, 2, 100);
      if (pfds[0].revents) break;
    }
    ::_exit(0);
  } catch (const std::exception& error) {
    std::snprintf(info.error, sizeof info.error, "%s", error.what());
    (void)!::write(pipe_fd, &info, sizeof info);
    ::_exit(1);
  }
}

struct Measurement {
  std::string transport;
  size_t size;
  double p50, p99, single_mbps, deep_mbps;
};

double percentile(std::vector<double> values, double p) {
  std::sort(values.begin(), values.end());
  return values[std::min(values.size() - 1, static_cast<size_t>(p * values.size()))];
}

int iterations_for(size_t size, int base) {
  return size >= (2 << 20) ? std::max(50, base / 20) : size >= (64 << 10) ? std::max(200, base / 2) : base;
}

Measurement bench_socket(const Args& args, uint16_t port, size_t size) {
  std::string error;
  UniqueFd fd = tcp_connect(args.host, port, deadline_after(std::chrono::seconds(5)), &error);
  if (!fd.valid()) throw std::runtime_error("socket floor: " + error);
  std::vector<uint8_t> buffer(size);
  std::vector<double> latencies;
  int n = iterations_for(size, args.iterations);
  for (int i = -10; i < n; ++i) {
    uint64_t request[2] = {(static_cast<uint64_t>(i + 10) * size) % (kExported - size) / 4096 * 4096, size};
    auto start = std::chrono::steady_clock::now();
    (void)send_all(fd.get(), {reinterpret_cast<uint8_t*>(request), sizeof request}, deadline_after(std::chrono::seconds(5)));
    if (!recv_all(fd.get(), buffer, deadline_after(std::chrono::seconds(5))).is_ok()) throw std::runtime_error("socket read");
    if (i >= 0) latencies.push_back(Micros(std::chrono::steady_clock::now() - start).count());
  }
  double total_us = 0;
  for (double l : latencies) total_us += l;
  // Pipelined throughput: `depth` requests in flight.
  auto start = std::chrono::steady_clock::now();
  int rounds = std::max(1, n / args.depth);
  for (int r = 0; r < rounds; ++r) {
    std::vector<uint64_t> requests;
    for (int d = 0; d < args.depth; ++d) requests.insert(requests.end(), {(static_cast<uint64_t>(d) * size) % (kExported - size) / 4096 * 4096, size});
    (void)send_all(fd.get(), {reinterpret_cast<uint8_t*>(requests.data()), requests.size() * 8}, deadline_after(std::chrono::seconds(5)));
    for (int d = 0; d < args.depth; ++d)
      if (!recv_all(fd.get(), buffer, deadline_after(std::chrono::seconds(5))).is_ok()) throw std::runtime_error("socket read");
  }
  double deep_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return {"socket (floor)", size, percentile(latencies, 0.5), percentile(latencies, 0.99),
          size * latencies.size() / total_us, static_cast<double>(size) * rounds * args.depth / deep_s / 1e6};
}

Measurement bench_fabric(const Args& args, const DonorInfo& info, Provider provider, size_t size) {
  DomainOptions options;
  options.provider = provider;
  options.device = args.device;
  if (provider != Provider::kShm) {
    options.node = args.host;
    options.service = std::to_string(info.data_port);
  }
  auto domain = Domain::open(options);
  std::unique_ptr<Channel> channel;
  uint64_t key = provider == Provider::kShm ? info.shm_key : info.tcp_key;
  uint64_t base = provider == Provider::kShm ? info.shm_base : info.tcp_base;
  if (provider == Provider::kShm) {
    channel = Channel::attach(*domain, {reinterpret_cast<const uint8_t*>(info.shm_name), std::strlen(info.shm_name)});
  } else {
    channel = Channel::connect(*domain, args.host, info.data_port, {}, deadline_after(std::chrono::seconds(5)));
  }
  std::vector<uint8_t> buffer(size * args.depth);
  auto mr = domain->register_memory(buffer.data(), buffer.size(), FI_READ | FI_WRITE, domain->random_key());
  MemoryRegion region(mr ? *mr : nullptr);
  std::vector<double> latencies;
  int n = iterations_for(size, args.iterations);
  for (int i = -10; i < n; ++i) {
    RmaOp op{buffer.data(), size, region.desc(), base + (static_cast<uint64_t>(i + 10) * size) % (kExported - size) / 4096 * 4096};
    auto start = std::chrono::steady_clock::now();
    Status status = channel->read({&op, 1}, key, deadline_after(std::chrono::seconds(5)));
    if (!status) throw std::runtime_error(std::string("fabric read: ") + status.to_string());
    if (i >= 0) latencies.push_back(Micros(std::chrono::steady_clock::now() - start).count());
  }
  double total_us = 0;
  for (double l : latencies) total_us += l;
  std::vector<RmaOp> ops;
  for (int d = 0; d < args.depth; ++d)
    ops.push_back({buffer.data() + d * size, size, region.desc(), base + (static_cast<uint64_t>(d) * size) % (kExported - size) / 4096 * 4096});
  auto start = std::chrono::steady_clock::now();
  int rounds = std::max(1, n / args.depth);
  for (int r = 0; r < rounds; ++r) {
    Status status = channel->read(ops, key, deadline_after(std::chrono::seconds(10)));
    if (!status) throw std::runtime_error(std::string("fabric read: ") + status.to_string());
  }
  double deep_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return {std::string("libfabric ") + to_string(provider), size, percentile(latencies, 0.5),
          percentile(latencies, 0.99), size * latencies.size() / total_us,
          static_cast<double>(size) * rounds * args.depth / deep_s / 1e6};
}

std::string size_text(size_t size) {
  return size >= (1 << 20) ? std::to_string(size >> 20) + " MiB" : std::to_string(size >> 10) + " KiB";
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--iterations") args.iterations = std::max(20, std::atoi(next().c_str()));
    else if (a == "--depth") args.depth = std::max(1, std::atoi(next().c_str()));
    else if (a == "--device") args.device = next();
    else if (a == "--host") args.host = next();
    else if (a == "--load") args.load = true;
    else if (a == "--json") args.json = true;
    else if (a == "--providers") {
      args.providers.clear();
      std::string list = next();
      size_t start = 0;
      while (start <= list.size()) {
        size_t comma = list.find(',', start);
        std::string name = list.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
        auto provider = parse_provider(name);
        if (!provider) {
          std::fprintf(stderr, "unknown provider '%s' (tcp, shm, verbs)\n", name.c_str());
          return 2;
        }
        args.providers.push_back(*provider);
        if (comma == std::string::npos) break;
        start = comma + 1;
      }
    } else if (a == "--help" || a == "-h") {
      std::printf("usage: emp-transport-bench [--iterations N] [--providers tcp,shm,verbs] [--device DEV --host ADDR]\n"
                  "                           [--depth D] [--load] [--json]\n"
                  "  --load   also measure with one busy thread on this machine (idle vs loaded)\n");
      return 0;
    } else {
      std::fprintf(stderr, "unknown argument '%s' (see --help)\n", a.c_str());
      return 2;
    }
  }
  int fds[2];
  if (::pipe(fds) != 0) return 1;
  pid_t donor = ::fork();
  if (donor == 0) {
    ::close(fds[0]);
    run_donor(fds[1], args);
  }
  ::close(fds[1]);
  DonorInfo info{};
  if (::read(fds[0], &info, sizeof info) != sizeof info || info.error[0]) {
    std::fprintf(stderr, "donor failed: %s\n", info.error);
    return 1;
  }
  std::vector<std::pair<std::string, Measurement>> results;
  auto run_all = [&](const std::string& condition) {
    for (size_t size : {size_t{4096}, size_t{64 << 10}, size_t{2 << 20}}) {
      results.push_back({condition, bench_socket(args, info.socket_port, size)});
      for (Provider provider : args.providers) {
        if (provider == Provider::kShm && !info.shm_name[0]) continue;
        if (provider == Provider::kVerbs && args.device.empty()) continue;
        try {
          results.push_back({condition, bench_fabric(args, info, provider, size)});
        } catch (const std::exception& error) {
          std::fprintf(stderr, "%s: %s\n", to_string(provider), error.what());
        }
      }
    }
  };
  run_all("idle");
  if (args.load) {
    std::atomic<bool> stop{false};
    std::thread busy([&] {
      volatile uint64_t x = 0;
      while (!stop.load(std::memory_order_relaxed)) x = x + 1;
    });
    run_all("loaded");
    stop = true;
    busy.join();
  }
  ::close(fds[0]);
  ::waitpid(donor, nullptr, 0);

  if (args.json) {
    std::printf("[");
    for (size_t i = 0; i < results.size(); ++i) {
      const auto& [condition, r] = results[i];
      std::printf("%s{\"condition\":\"%s\",\"transport\":\"%s\",\"size\":%zu,\"p50_us\":%.1f,\"p99_us\":%.1f,"
                  "\"single_MBps\":%.0f,\"depth%d_MBps\":%.0f}",
                  i ? "," : "", condition.c_str(), r.transport.c_str(), r.size, r.p50, r.p99, r.single_mbps,
                  args.depth, r.deep_mbps);
    }
    std::printf("]\n");
    return 0;
  }
  std::printf("%-8s %-16s %8s %9s %9s %13s %13s\n", "machine", "transport", "size", "p50 us", "p99 us", "MB/s (1 op)",
              ("MB/s (" + std::to_string(args.depth) + " ops)").c_str());
  for (const auto& [condition, r] : results)
    std::printf("%-8s %-16s %8s %9.1f %9.1f %13.0f %13.0f\n", condition.c_str(), r.transport.c_str(),
                size_text(r.size).c_str(), r.p50, r.p99, r.single_mbps, r.deep_mbps);
  return 0;
}
