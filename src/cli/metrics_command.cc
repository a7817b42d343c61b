// emp metrics: the counters and latency histograms of every EMP process on this node in
// the Prometheus text format (exposition format 0.0.4), printed once (for node_exporter's
// textfile collector) or served over HTTP for a scrape (--listen ADDR:PORT, as vmd's
// --metrics). The processes are found and queried as `emp ls` does (cli/process_query.h);
// each sample is labelled with the process's pid and program.
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "cli/cli.h"
#include "cli/process_query.h"
#include "net/metrics_http.h"
#include "net/socket.h"

namespace emp::cli {
namespace {

using control::JsonValue;

volatile sig_atomic_t g_stop = 0;

std::string escaped_label(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

std::string number_text(double value) {
  char text[32];
  std::snprintf(text, sizeof text, "%.9g", value);
  return text;
}

// Metric families in the order they were first named, each with its samples.
class Exposition {
 public:
  void add(const std::string& name, const char* type, const char* help, const std::string& labels, double value,
           const char* suffix = "") {
    Family& family = family_of(name, type, help);
    family.samples += name + suffix + "{" + labels + "} " + number_text(value) + "\n";
  }
  // A histogram from EMP's log-linear buckets ([upper ns, count], non-empty ones), in
  // seconds over fixed bounds.
  void add_histogram(const std::string& name, const char* help, const std::string& labels, const JsonValue* histogram) {
    static constexpr double kBoundsSeconds[] = {1e-6, 2e-6, 5e-6, 10e-6, 20e-6, 50e-6, 100e-6, 200e-6, 500e-6,
                                                1e-3, 2e-3, 5e-3, 10e-3, 20e-3, 50e-3, 100e-3, 1.0};
    std::vector<std::pair<double, uint64_t>> buckets;  // upper bound (s), count
    if (histogram)
      if (const JsonValue* list = histogram->find("buckets"); list && list->is_array())
        for (const auto& bucket : list->items())
          if (bucket.is_array() && bucket.items().size() == 2)
            buckets.emplace_back(static_cast<double>(bucket.items()[0].as_u64()) / 1e9, bucket.items()[1].as_u64());
    Family& family = family_of(name, "histogram", help);
    uint64_t total = 0;
    for (const auto& bucket : buckets) total += bucket.second;
    for (double bound : kBoundsSeconds) {
      uint64_t below = 0;
      for (const auto& bucket : buckets)
        if (bucket.first <= bound) below += bucket.second;
      family.samples += name + "_bucket{" + labels + ",le=\"" + number_text(bound) + "\"} " + std::to_string(below) + "\n";
    }
    family.samples += name + "_bucket{" + labels + ",le=\"+Inf\"} " + std::to_string(total) + "\n";
    double sum = histogram ? static_cast<double>(histogram->u64("sum_ns")) / 1e9 : 0;
    family.samples += name + "_sum{" + labels + "} " + number_text(sum) + "\n";
    family.samples += name + "_count{" + labels + "} " + std::to_string(total) + "\n";
  }
  std::string text() const {
    std::string out;
    for (const auto& name : order_) {
      const Family& family = families_.at(name);
      out += "# HELP " + name + " " + family.help + "\n# TYPE " + name + " " + family.type + "\n" + family.samples;
    }
    return out;
  }

 private:
  struct Family {
    std::string type, help, samples;
  };
  Family& family_of(const std::string& name, const char* type, const char* help) {
    auto [it, inserted] = families_.try_emplace(name, Family{type, help, ""});
    if (inserted) order_.push_back(name);
    return it->second;
  }
  std::map<std::string, Family> families_;
  std::vector<std::string> order_;
};

void add_process(Exposition& e, pid_t pid, const JsonValue& info, const JsonValue& stats) {
  std::string labels = "pid=\"" + std::to_string(pid) + "\",program=\"" + escaped_label(info.str("program", "?")) + "\"";
  auto with = [&](const char* key, const std::string& value) {
    return labels + "," + key + "=\"" + escaped_label(value) + "\"";
  };
  const char* faults = "Page faults EMP served, by kind (zero: first touch; fetch: read from the second tier; "
                       "local: already resident; write_protect: first write to a clean block).";
  e.add("emp_faults_total", "counter", faults, with("kind", "zero"), stats.number("faults_zero"));
  e.add("emp_faults_total", "counter", faults, with("kind", "fetch"), stats.number("faults_fetch"));
  e.add("emp_faults_total", "counter", faults, with("kind", "local"), stats.number("faults_local"));
  e.add("emp_faults_total", "counter", faults, with("kind", "write_protect"), stats.number("faults_write_protect"));
  e.add("emp_prefetched_blocks_total", "counter", "Blocks brought in ahead of a fault (readahead).", labels,
        stats.number("prefetched"));
  const char* evictions = "Blocks evicted: clean (dropped, no I/O) or dirty (written back first).";
  e.add("emp_evictions_total", "counter", evictions, with("kind", "clean"), stats.number("evictions_clean"));
  e.add("emp_evictions_total", "counter", evictions, with("kind", "dirty"), stats.number("evictions_dirty"));
  e.add("emp_evictions_on_fault_path_total", "counter", "Eviction batches a fault had to run itself.", labels,
        stats.number("evictions_direct"));
  e.add("emp_io_errors_total", "counter", "Second-tier I/O errors.", labels, stats.number("io_errors"));
  e.add("emp_takeovers_total", "counter", "Kernel-served (deferred) regions EMP took over.", labels,
        stats.number("takeovers"));
  e.add("emp_resident_bytes", "gauge", "Local DRAM charged to EMP-managed memory.", labels,
        stats.number("resident_bytes"));
  e.add("emp_budget_bytes", "gauge", "Local DRAM budget.", labels, stats.number("budget_bytes"));
  e.add("emp_peak_resident_bytes", "gauge", "Highest resident_bytes so far.", labels, stats.number("peak_resident_bytes"));
  e.add("emp_managed_bytes", "gauge", "Memory under EMP (mapped regions).", labels, stats.number("managed_bytes"));
  e.add("emp_deferred_bytes", "gauge", "Regions the kernel serves until the budget needs them.", labels,
        stats.number("deferred_bytes"));
  e.add("emp_metadata_bytes", "gauge", "Block tables.", labels, stats.number("metadata_bytes"));
  e.add("emp_regions", "gauge", "Managed regions.", labels, stats.number("regions"));
  e.add("emp_pool_capacity_bytes", "gauge", "Second-tier capacity.", labels, stats.number("pool_capacity"));
  e.add("emp_pool_reserved_bytes", "gauge", "Second-tier space reserved by regions.", labels,
        stats.number("pool_reserved"));
  e.add_histogram("emp_fault_latency_seconds", "Time to serve a fault, from the message to the wake-up.", labels,
                  stats.find("fault_latency_histogram"));
  e.add_histogram("emp_fetch_latency_seconds", "Time to serve a fault that read the second tier.", labels,
                  stats.find("fetch_latency_histogram"));
  if (const JsonValue* tiers = stats.find("tiers"); tiers && tiers->is_array()) {
    for (const auto& tier : tiers->items()) {
      std::string tier_labels = with("tier", tier.str("name", "?"));
      e.add("emp_tier_read_bytes_total", "counter", "Bytes read from a second-tier element.", tier_labels,
            tier.number("bytes_read"));
      e.add("emp_tier_written_bytes_total", "counter", "Bytes written to a second-tier element.", tier_labels,
            tier.number("bytes_written"));
      e.add("emp_tier_read_ops_total", "counter", "Read operations on a second-tier element.", tier_labels,
            tier.number("read_ops"));
      e.add("emp_tier_write_ops_total", "counter", "Write operations on a second-tier element.", tier_labels,
            tier.number("write_ops"));
      e.add("emp_tier_errors_total", "counter", "Failed operations on a second-tier element.", tier_labels,
            tier.number("errors"));
      e.add("emp_tier_capacity_bytes", "gauge", "Capacity of a second-tier element.", tier_labels,
            tier.number("capacity"));
      e.add("emp_tier_health", "gauge", "1 for the element's current health (healthy, degraded, lost, ...).",
            tier_labels + ",health=\"" + escaped_label(tier.str("health", "?")) + "\"", 1);
    }
  }
}

std::string gather() {
  Exposition e;
  std::vector<ProcessSample> processes = query_all_processes();
  for (const auto& process : processes) add_process(e, process.pid, process.info, process.stats);
  e.add("emp_processes", "gauge", "EMP processes found on this node (those this user may query).", "",
        static_cast<double>(processes.size()));
  return e.text();
}

void on_signal(int) { g_stop = 1; }

int serve(const std::string& where) {
  std::string address, port_text;
  if (!net::split_host_port(where, &address, &port_text) || address.empty())
    throw UsageError("--listen: expected ADDR:PORT, got '" + where + "'");
  char* end = nullptr;
  long port = std::strtol(port_text.c_str(), &end, 10);
  if (!end || *end || port < 1 || port > 65535) throw UsageError("--listen: bad port in '" + where + "'");
  UniqueFd listener = net::tcp_listen(address, static_cast<uint16_t>(port));
  struct sigaction action {};
  action.sa_handler = on_signal;
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  std::printf("emp metrics: serving http://%s/metrics (Ctrl-C to stop)\n", where.c_str());
  std::fflush(stdout);
  while (!g_stop) {
    pollfd fd{listener.get(), POLLIN, 0};
    if (::poll(&fd, 1, 500) <= 0) continue;
    UniqueFd client(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (client.valid()) net::answer_metrics_request(client.get(), gather());
  }
  return 0;
}

}  // namespace

std::string metrics_help() {
  return "usage: emp metrics [--listen ADDR:PORT]\n"
         "\n"
         "The counters and latency histograms of every EMP process on this node (a user's own;\n"
         "root: everyone's) in the Prometheus text format, labelled with pid and program: faults by\n"
         "kind, evictions, resident/budget/managed/deferred bytes, per second-tier element bytes,\n"
         "operations, errors and health, and fault and fetch latency histograms (seconds).\n"
         "Metric list and a scrape configuration: docs/operations.md.\n"
         "\n"
         "  (no option)          print once, e.g. for node_exporter's textfile collector\n"
         "  --listen ADDR:PORT   serve the same over HTTP (any path) until Ctrl-C or SIGTERM\n";
}

int metrics_command(const Args& args) {
  std::string listen;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--listen" && i + 1 < args.size()) {
      listen = args[++i];
    } else if (args[i].rfind("--listen=", 0) == 0) {
      listen = args[i].substr(9);
    } else {
      throw UsageError("unknown argument '" + args[i] + "'");
    }
  }
  if (!listen.empty()) return serve(listen);
  std::string text = gather();
  std::fwrite(text.data(), 1, text.size(), stdout);
  return 0;
}

}  // namespace emp::cli
