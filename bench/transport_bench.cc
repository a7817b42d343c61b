// emp-transport-bench: read latency (p50/p99) and throughput of every data-path
// candidate for 4 KiB / 64 KiB / 2 MiB, next to a plain TCP socket request/response
// floor measured in the same run against the same donor process:
//   socket (floor)   blocking send of {offset, length}, blocking receive of the bytes;
//   emp tcp          SocketPath against vmd's SocketServer (the product's tcp path);
//   libfabric tcp    libfabric's tcp provider, one-sided fi_read (the earlier path);
//   emp shm          ShmPath: pread on the lease's memory file passed by the donor;
//   verbs            libfabric verbs (with --device and --host).
// The donor (a lease's memory, a SocketServer, a libfabric Exporter and the floor's
// socket server) runs in a forked child, so every number crosses a process boundary.
// Conditions: idle; "loaded" (--load: one busy thread on this machine); "writes"
// (--writes: a thread keeps posting 64-block write batches of 64 KiB through the same
// path while reads are measured — write-back must not delay fault reads).
//
//   emp-transport-bench [--iterations N] [--candidates LIST] [--device DEV --host ADDR]
//                       [--depth D] [--load] [--writes] [--json]
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "net/auth.h"
#include "net/exporter.h"
#include "net/fabric_path.h"
#include "net/shm_path.h"
#include "net/socket.h"
#include "net/socket_path.h"
#include "vmd/lease_memory.h"
#include "vmd/socket_server.h"

using namespace emp;
using namespace emp::net;
using Micros = std::chrono::duration<double, std::micro>;

namespace {

constexpr size_t kExported = 64 << 20;
const std::vector<std::string> kAllCandidates = {"emp-tcp", "libfabric-tcp", "emp-shm", "verbs"};

struct DonorInfo {
  uint16_t fabric_port;
  uint16_t socket_server_port;
  uint16_t floor_port;
  uint64_t fabric_key, fabric_base;
  uint8_t ticket[protocol::kTokenBytes];
  char error[256];
};

struct Args {
  int iterations = 2000;
  std::vector<std::string> candidates = {"emp-tcp", "libfabric-tcp", "emp-shm"};
  std::string device;
  std::string host = "127.0.0.1";
  int depth = 16;
  bool load = false;
  bool writes = false;
  bool json = false;
};

bool wants(const Args& args, const std::string& candidate) {
  return std::find(args.candidates.begin(), args.candidates.end(), candidate) != args.candidates.end();
}

// The donor: one lease's memory, served over every data plane, plus the floor server.
[[noreturn]] void run_donor(int control_fd, const Args& args) {
  DonorInfo info{};
  try {
    auto memory = vmd::LeaseMemory::create(kExported);
    std::memset(memory->data(), 7, kExported);
    ExporterConfig config;
    config.provider = args.device.empty() ? Provider::kTcp : Provider::kVerbs;
    config.device = args.device;
    config.bind_address = args.host;
    std::unique_ptr<Exporter> exporter;
    MemoryRegion exported;
    if (wants(args, "libfabric-tcp") || wants(args, "verbs")) {
      exporter = Exporter::open(config);
      exported = exporter->export_memory(memory->data(), kExported);
      info.fabric_port = exporter->data_port();
      info.fabric_key = exported.key();
      info.fabric_base = exporter->remote_base(memory->data());
    }
    vmd::SocketServer server(args.host);
    random_bytes(info.ticket);
    server.allow(1, info.ticket, 1, memory);
    info.socket_server_port = server.port();
    UniqueFd listener = tcp_listen(args.host, 0);
    info.floor_port = local_port(listener.get());
    // The info, with the memory file attached (what vmd's local socket does for shm).
    if (!send_all(control_fd, {reinterpret_cast<const uint8_t*>(&info), sizeof info},
                  deadline_after(std::chrono::seconds(5)), memory->fd()))
      ::_exit(1);
    // Socket floor server: request = {offset, length}, reply = the bytes.
    std::thread floor([&] {
      while (true) {
        int fd = ::accept(listener.get(), nullptr, nullptr);
        if (fd < 0) return;
        std::thread([fd, base = memory->data()] {
          int one = 1;
          ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          uint64_t request[2];
          while (::recv(fd, request, sizeof request, MSG_WAITALL) == sizeof request) {
            if (request[0] > kExported || request[1] > kExported - request[0]) break;
            size_t done = 0;
            while (done < request[1]) {
              ssize_t n = ::send(fd, base + request[0] + done, request[1] - done, MSG_NOSIGNAL);
              if (n <= 0) break;
              done += static_cast<size_t>(n);
            }
            if (done < request[1]) break;
          }
          ::close(fd);
        }).detach();
      }
    });
    floor.detach();
    // Serve connection requests until the parent closes its end.
    while (true) {
      if (exporter) exporter->process_events([](std::span<const uint8_t>) { return uint64_t{1}; });
      pollfd pfds[2] = {{control_fd, POLLIN, 0}, {exporter ? exporter->event_fd() : -1, POLLIN, 0}};
      ::poll(pfds, 2, 100);
      if (pfds[0].revents) break;
    }
    ::_exit(0);
  } catch (const std::exception& error) {
    std::snprintf(info.error, sizeof info.error, "%s", error.what());
    (void)!::write(control_fd, &info, sizeof info);
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

uint64_t offset_of(int i, size_t size) { return (static_cast<uint64_t>(i) * size) % (kExported - size) / 4096 * 4096; }

// Latency of `n` single reads, then throughput with `depth` reads per batch.
Measurement measure(const std::string& name, size_t size, const Args& args,
                    const std::function<void(std::span<const tier::IoSpan>)>& read) {
  std::vector<uint8_t> buffer(size * args.depth);
  std::vector<double> latencies;
  int n = iterations_for(size, args.iterations);
  for (int i = -10; i < n; ++i) {
    tier::IoSpan span{offset_of(i + 10, size), buffer.data(), size};
    auto start = std::chrono::steady_clock::now();
    read({&span, 1});
    if (i >= 0) latencies.push_back(Micros(std::chrono::steady_clock::now() - start).count());
  }
  double total_us = 0;
  for (double l : latencies) total_us += l;
  std::vector<tier::IoSpan> spans;
  for (int d = 0; d < args.depth; ++d) spans.push_back({offset_of(d, size), buffer.data() + d * size, size});
  auto start = std::chrono::steady_clock::now();
  int rounds = std::max(1, n / args.depth);
  for (int r = 0; r < rounds; ++r) read(spans);
  double deep_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return {name, size, percentile(latencies, 0.5), percentile(latencies, 0.99), size * latencies.size() / total_us,
          static_cast<double>(size) * rounds * args.depth / deep_s / 1e6};
}

void check(Status status, const std::string& what) {
  if (!status) throw std::runtime_error(what + ": " + status.to_string());
}

// A path's reads, optionally with a thread writing 64 x 64 KiB batches through it.
Measurement measure_path(const std::string& name, DataPath& path, size_t size, const Args& args, bool with_writes) {
  std::atomic<bool> stop{false};
  std::thread writer;
  if (with_writes) {
    writer = std::thread([&] {
      std::vector<uint8_t> data(64 * 65536, 7);  // the donor's pattern: reads stay consistent
      std::vector<tier::IoSpan> batch;
      for (int i = 0; i < 64; ++i) batch.push_back({kExported / 2 + static_cast<uint64_t>(i) * 65536, data.data() + i * 65536, 65536});
      while (!stop.load()) check(path.write(batch, deadline_after(std::chrono::seconds(10))), name + " write batch");
    });
  }
  Measurement result;
  try {
    result = measure(name, size, args, [&](std::span<const tier::IoSpan> spans) {
      check(path.read(spans, deadline_after(std::chrono::seconds(10))), name + " read");
    });
  } catch (...) {
    stop = true;
    if (writer.joinable()) writer.join();
    throw;
  }
  stop = true;
  if (writer.joinable()) writer.join();
  return result;
}

Measurement measure_floor(const Args& args, uint16_t port, size_t size) {
  std::string error;
  UniqueFd fd = tcp_connect(args.host, port, deadline_after(std::chrono::seconds(5)), &error);
  if (!fd.valid()) throw std::runtime_error("socket floor: " + error);
  return measure("socket (floor)", size, args, [&](std::span<const tier::IoSpan> spans) {
    std::vector<uint64_t> requests;
    for (const auto& span : spans) requests.insert(requests.end(), {span.offset, span.length});
    if (::send(fd.get(), requests.data(), requests.size() * 8, MSG_NOSIGNAL) != static_cast<ssize_t>(requests.size() * 8))
      throw std::runtime_error("socket floor send");
    for (const auto& span : spans)
      if (::recv(fd.get(), span.buffer, span.length, MSG_WAITALL) != static_cast<ssize_t>(span.length))
        throw std::runtime_error("socket floor receive");
  });
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
    else if (a == "--writes") args.writes = true;
    else if (a == "--json") args.json = true;
    else if (a == "--candidates") {
      args.candidates.clear();
      std::string list = next();
      size_t start = 0;
      while (start <= list.size()) {
        size_t comma = list.find(',', start);
        std::string name = list.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
        if (std::find(kAllCandidates.begin(), kAllCandidates.end(), name) == kAllCandidates.end()) {
          std::fprintf(stderr, "unknown candidate '%s' (emp-tcp, libfabric-tcp, emp-shm, verbs)\n", name.c_str());
          return 2;
        }
        args.candidates.push_back(name);
        if (comma == std::string::npos) break;
        start = comma + 1;
      }
    } else if (a == "--help" || a == "-h") {
      std::printf(
          "usage: emp-transport-bench [--iterations N] [--candidates LIST] [--device DEV --host ADDR]\n"
          "                           [--depth D] [--load] [--writes] [--json]\n"
          "  --candidates  data paths to measure next to the plain-socket floor:\n"
          "                emp-tcp, libfabric-tcp, emp-shm, verbs  [emp-tcp,libfabric-tcp,emp-shm]\n"
          "  --device DEV  an RDMA device for verbs (with --host, its address; verbs replaces libfabric-tcp)\n"
          "  --depth D     reads per batch in the throughput column                      [16]\n"
          "  --load        also measure with one busy thread on this machine\n"
          "  --writes      also measure while a thread writes 64 x 64 KiB batches through the same path\n"
          "  --json        print the results as JSON\n");
      return 0;
    } else {
      std::fprintf(stderr, "unknown argument '%s' (see --help)\n", a.c_str());
      return 2;
    }
  }
  if (wants(args, "verbs") && args.device.empty()) {
    std::fprintf(stderr, "the verbs candidate needs --device DEV (and --host ADDR)\n");
    return 2;
  }
  if (wants(args, "verbs") && wants(args, "libfabric-tcp")) {
    std::fprintf(stderr, "choose verbs or libfabric-tcp: the donor runs one libfabric provider\n");
    return 2;
  }
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) return 1;
  pid_t donor = ::fork();
  if (donor == 0) {
    ::close(fds[0]);
    run_donor(fds[1], args);
  }
  ::close(fds[1]);
  DonorInfo info{};
  UniqueFd memory_file;
  Status got = recv_all(fds[0], {reinterpret_cast<uint8_t*>(&info), sizeof info}, deadline_after(std::chrono::seconds(30)),
                        &memory_file);
  if (!got || info.error[0]) {
    std::fprintf(stderr, "donor failed: %s\n", info.error[0] ? info.error : got.to_string().c_str());
    return 1;
  }
  std::vector<std::pair<std::string, Measurement>> results;
  int failures = 0;
  try {
    // The paths under test, as a client holds them.
    protocol::DataConnect hello{protocol::kDataMagic, protocol::kVersion, 0, 1, {}};
    std::memcpy(hello.ticket, info.ticket, sizeof hello.ticket);
    std::vector<std::pair<std::string, std::unique_ptr<DataPath>>> paths;
    if (wants(args, "emp-tcp"))
      paths.emplace_back("emp tcp", SocketPath::connect(args.host, info.socket_server_port, hello, {},
                                                        deadline_after(std::chrono::seconds(5))));
    std::unique_ptr<FabricBuffers> fabric;
    if (wants(args, "libfabric-tcp") || wants(args, "verbs")) {
      DomainOptions options;
      options.provider = args.device.empty() ? Provider::kTcp : Provider::kVerbs;
      options.device = args.device;
      options.node = args.host;
      options.service = std::to_string(info.fabric_port);
      fabric = std::make_unique<FabricBuffers>(Domain::open(options));
      protocol::LeaseGrant grant{};
      grant.lease_id = 1;
      grant.data_port = info.fabric_port;
      grant.mr_key = info.fabric_key;
      grant.remote_base = info.fabric_base;
      paths.emplace_back(args.device.empty() ? "libfabric tcp" : "verbs",
                         FabricPath::connect(*fabric, args.host, grant, {}, deadline_after(std::chrono::seconds(5))));
    }
    if (wants(args, "emp-shm")) paths.emplace_back("emp shm", std::make_unique<ShmPath>(std::move(memory_file), kExported));

    auto run_all = [&](const std::string& condition, bool with_writes) {
      for (size_t size : {size_t{4096}, size_t{64 << 10}, size_t{2 << 20}}) {
        results.push_back({condition, measure_floor(args, info.floor_port, size)});
        for (auto& [name, path] : paths) {
          try {
            results.push_back({condition, measure_path(name, *path, size, args, with_writes)});
          } catch (const std::exception& error) {
            ++failures;
            std::fprintf(stderr, "%s (%s): %s\n", name.c_str(), condition.c_str(), error.what());
          }
        }
      }
    };
    run_all("idle", false);
    if (args.load) {
      std::atomic<bool> stop{false};
      std::thread busy([&] {
        volatile uint64_t x = 0;
        while (!stop.load(std::memory_order_relaxed)) x = x + 1;
      });
      run_all("loaded", false);
      stop = true;
      busy.join();
    }
    if (args.writes) run_all("writes", true);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "%s\n", error.what());
    ++failures;
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
    return failures ? 1 : 0;
  }
  std::printf("%-8s %-16s %8s %9s %9s %9s %13s %13s\n", "machine", "transport", "size", "p50 us", "p99 us",
              "÷ floor", "MB/s (1 op)", ("MB/s (" + std::to_string(args.depth) + " ops)").c_str());
  double floor_p50 = 0;
  for (const auto& [condition, r] : results) {
    if (r.transport == "socket (floor)") floor_p50 = r.p50;
    std::printf("%-8s %-16s %8s %9.1f %9.1f %9.2f %13.0f %13.0f\n", condition.c_str(), r.transport.c_str(),
                size_text(r.size).c_str(), r.p50, r.p99, floor_p50 > 0 ? r.p50 / floor_p50 : 0.0, r.single_mbps,
                r.deep_mbps);
  }
  return failures ? 1 : 0;
}
