// emp-bench: runs a verified workload on EMP-managed memory (and, for the ratio, on
// plain all-local memory in the same run) and prints a table plus one JSON line.
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/log.h"
#include "common/mem_path.h"
#include "common/options.h"
#include "common/size_parse.h"
#include "core/engine.h"
#include "workloads.h"
#ifdef EMP_HAVE_NET
#include "net/remote_factory.h"
#endif

extern char** environ;

namespace emp::bench {
namespace {

constexpr size_t kPage = 4096;

struct Args {
  std::string tier;
  uint64_t working_set = 1ULL << 30;
  std::string local_text = "25%";
  uint64_t local_bytes = 0;
  WorkloadParams workload{.latency_every = 4};
  Options options;
  bool baseline = true;
  bool local_only = false;
  double miss_cost_us = 25.0;
  std::string json_file;
};

const char* kUsage = R"(usage: emp-bench --tier SPEC [options]

Runs a workload on EMP-managed memory with part of it in local DRAM and the rest in
the second tier, verifies every byte, and prints throughput, faults, fault latency and
bytes moved as a table and as one JSON line (the last line of the output). By default
the same workload also runs on plain memory (all-local) for the ratio. JSON
"throughput" and "seconds" are those of the EMP run (of the plain run with
--local-only); "majflt"/"minflt" are getrusage() page faults of the measured phase;
"latency" is the sampled per-operation histogram ([upper bound ns, count] buckets).

  --tier SPEC            second-tier elements of a memory path, '|'-separated:
                           /path/to/file:<MiB>:<offset MiB>   (created if missing)
                           /dev/<blockdev>:<MiB>:<offset MiB> (overwritten!)
                           <host>:<MiB>:<port>                (a vmd donor)
  --working-set SIZE     memory the workload uses (default 1G; K/M/G suffixes)
  --local PCT|SIZE       local DRAM budget: a percentage of the working set or a size
                         (default 25%)
  --pattern NAME         seq | rand | zipf | sort | mixed (default zipf); mixed streams
                         through one half and hits random pages of the other
  --threads N            workload threads (default 1)
  --ops N                rand/zipf: page operations (default 2 per page; with
                         --duration: no limit but the time)
  --passes N             seq: sweeps over the working set (default 2; ignored with
                         --duration)
  --duration SECONDS     stop the measured phase after SECONDS (all patterns; the work
                         done so far is counted and verified exactly; the rand/zipf
                         warm-up is bounded by the same time; sort stops between or
                         inside partitioning passes and checks the partial order)
  --latency-every K      rand/zipf: time every K-th measured operation into a latency
                         histogram (default 4; 0 = off)
  --zipf-theta X         Zipf skew (default 0.99)
  --seed N               random seed (default 1)
  --block-size SIZE      EMP block, 4K..2M (default 64K)
  --subblock-size SIZE   EMP subblock, 4K..128K, <= block (default 16K)
  --csf 0|1              critical-subblock-first (default 1)
  --fault-threads N      EMP fault-handler threads (default 2)
  --miss-cost-us X       cost of one remote fault for the ideal-cache bound (default 25)
  --no-baseline          skip the all-local run (no ratio_to_local)
  --local-only           run only the all-local baseline (no --tier needed)
  --json-file FILE       also append the JSON line to FILE
  --help                 this text
EMP_* environment variables (see below) set defaults; flags override them.

)";

[[noreturn]] void usage_error(const std::string& message) {
  std::fprintf(stderr, "emp-bench: %s\n(run emp-bench --help for usage)\n", message.c_str());
  std::exit(2);
}

uint64_t need_size(const std::string& flag, const std::string& value) {
  auto size = parse_size(value);
  if (!size || *size == 0) usage_error(flag + ": bad size '" + value + "' (e.g. 2G, 512M)");
  return *size;
}

uint64_t need_uint(const std::string& flag, const std::string& value, uint64_t min, uint64_t max) {
  auto n = parse_uint(value);
  if (!n || *n < min || *n > max)
    usage_error(flag + ": bad value '" + value + "' (expected " + std::to_string(min) + ".." + std::to_string(max) + ")");
  return *n;
}

double need_positive(const std::string& flag, const std::string& value) {
  char* end = nullptr;
  double number = std::strtod(value.c_str(), &end);
  if (!end || *end || !(number > 0)) usage_error(flag + ": expected a positive number, got '" + value + "'");
  return number;
}

Args parse_args(int argc, char** argv) {
  Args args;
  std::vector<std::string> warnings;
  try {
    args.options = options_from_environment(environ, &warnings);
  } catch (const std::exception& error) {
    usage_error(error.what());
  }
  for (const auto& w : warnings) std::fprintf(stderr, "emp-bench: warning: %s\n", w.c_str());
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::fputs(kUsage, stdout);
      std::fputs(describe_options().c_str(), stdout);
      std::exit(0);
    }
    std::string value;
    size_t eq = flag.find('=');
    if (eq != std::string::npos) {
      value = flag.substr(eq + 1);
      flag = flag.substr(0, eq);
    }
    auto next = [&]() -> std::string {
      if (eq != std::string::npos) return value;
      if (i + 1 >= argc) usage_error(flag + " needs a value");
      return argv[++i];
    };
    if (flag == "--tier") args.tier = next();
    else if (flag == "--working-set") args.working_set = need_size(flag, next());
    else if (flag == "--local") args.local_text = next();
    else if (flag == "--pattern") {
      std::string p = next();
      if (!parse_pattern(p, &args.workload.pattern)) usage_error("--pattern: unknown '" + p + "' (seq, rand, zipf or sort)");
    } else if (flag == "--threads") args.workload.threads = static_cast<unsigned>(need_uint(flag, next(), 1, 256));
    else if (flag == "--ops") args.workload.ops = need_uint(flag, next(), 1, UINT64_MAX / 2);
    else if (flag == "--passes") args.workload.passes = static_cast<unsigned>(need_uint(flag, next(), 1, 1000));
    else if (flag == "--latency-every") args.workload.latency_every = static_cast<unsigned>(need_uint(flag, next(), 0, 1u << 30));
    else if (flag == "--duration") args.workload.duration = need_positive(flag, next());
    else if (flag == "--seed") args.workload.seed = need_uint(flag, next(), 0, UINT64_MAX / 2);
    else if (flag == "--zipf-theta") {
      std::string v = next();
      char* end = nullptr;
      double theta = std::strtod(v.c_str(), &end);
      if (!end || *end || !(theta > 0 && theta < 1)) usage_error("--zipf-theta: expected a number in (0, 1), got '" + v + "'");
      args.workload.zipf_theta = theta;
    } else if (flag == "--miss-cost-us") {
      args.miss_cost_us = need_positive(flag, next());
    } else if (flag == "--no-baseline") args.baseline = false;
    else if (flag == "--local-only") args.local_only = true;
    else if (flag == "--json-file") args.json_file = next();
    else if (flag.rfind("--", 0) == 0 && find_option_by_flag(flag.substr(2))) {
      try {
        find_option_by_flag(flag.substr(2))->apply(args.options, next());
      } catch (const std::exception& error) {
        usage_error(flag + ": " + error.what());
      }
    } else {
      usage_error("unknown argument '" + flag + "'");
    }
  }
  try {
    args.options.validate();
  } catch (const std::exception& error) {
    usage_error(error.what());
  }
  args.working_set = (args.working_set + kPage - 1) / kPage * kPage;
  if (args.working_set < (1 << 20)) usage_error("--working-set must be at least 1M");
  if (!args.local_text.empty() && args.local_text.back() == '%') {
    auto pct = parse_uint(args.local_text.substr(0, args.local_text.size() - 1));
    if (!pct || *pct == 0 || *pct > 100) usage_error("--local: bad percentage '" + args.local_text + "' (1%..100%)");
    args.local_bytes = args.working_set / 100 * *pct;
  } else {
    args.local_bytes = need_size("--local", args.local_text);
  }
  args.local_bytes = args.local_bytes / kPage * kPage;
  if (!args.local_only && args.tier.empty()) usage_error("--tier is required (e.g. --tier /var/tmp/emp.tier:4096:0)");
  return args;
}

// Samples this process's VmRSS while the EMP run is going.
class RssMonitor {
 public:
  RssMonitor() : thread_([this] { loop(); }) {}
  ~RssMonitor() {
    stop_ = true;
    thread_.join();
  }
  uint64_t max_bytes() const { return max_.load(); }

  static uint64_t current_rss() {
    std::ifstream status("/proc/self/status");
    std::string line;
    while (std::getline(status, line))
      if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
    return 0;
  }

 private:
  void loop() {
    while (!stop_) {
      uint64_t rss = current_rss();
      if (rss > max_) max_ = rss;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> max_{0};
  std::thread thread_;
};

// Counters of the measured phase only (init and verification excluded).
core::EngineStats phase_delta(const core::EngineStats& end, const core::EngineStats& start) {
  core::EngineStats d = end;
  d.faults_zero -= start.faults_zero;
  d.faults_fetch -= start.faults_fetch;
  d.faults_write_protect -= start.faults_write_protect;
  d.faults_local -= start.faults_local;
  d.prefetched -= start.prefetched;
  d.evictions_clean -= start.evictions_clean;
  d.evictions_dirty -= start.evictions_dirty;
  d.evictions_direct -= start.evictions_direct;
  d.io_errors -= start.io_errors;
  d.write_protect_calls -= start.write_protect_calls;
  d.drop_calls -= start.drop_calls;
  d.bytes_read -= start.bytes_read;
  d.bytes_written -= start.bytes_written;
  d.fault_latency = end.fault_latency.since(start.fault_latency);
  d.fetch_latency = end.fetch_latency.since(start.fetch_latency);
  for (size_t i = 0; i < d.fault_stages.size(); ++i) d.fault_stages[i] = end.fault_stages[i].since(start.fault_stages[i]);
  for (size_t i = 0; i < d.evict_stages.size(); ++i) d.evict_stages[i] = end.evict_stages[i].since(start.evict_stages[i]);
  return d;
}

// getrusage() page faults of this process (major: read from disk or swap).
struct PageFaults {
  uint64_t major = 0, minor = 0;
  static PageFaults now() {
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    return {static_cast<uint64_t>(usage.ru_majflt), static_cast<uint64_t>(usage.ru_minflt)};
  }
};

// Runs the workload (its own start/end callbacks included) and stores the page faults of
// the measured phase in *faults.
WorkloadResult measure(void* memory, uint64_t bytes, WorkloadParams params, PageFaults* faults) {
  PageFaults start;
  auto on_start = std::move(params.on_run_start), on_end = std::move(params.on_run_end);
  params.on_run_start = [&] {
    if (on_start) on_start();
    start = PageFaults::now();
  };
  params.on_run_end = [&] {
    PageFaults end = PageFaults::now();
    *faults = {end.major - start.major, end.minor - start.minor};
    if (on_end) on_end();
  };
  return run_workload(memory, bytes, params);
}

// The sampled latency histogram as JSON: count, percentiles and the non-empty buckets.
std::string latency_json(const LatencyHistogram::Snapshot& latency, unsigned every) {
  std::ostringstream out;
  out << "{\"every\":" << every << ",\"samples\":" << latency.total()
      << ",\"p50_ns\":" << latency.percentile_ns(0.5) << ",\"p99_ns\":" << latency.percentile_ns(0.99)
      << ",\"p999_ns\":" << latency.percentile_ns(0.999) << ",\"buckets\":[";
  bool first = true;
  for (int i = 0; i < LatencyHistogram::kBuckets; ++i) {
    uint64_t count = latency.counts[static_cast<size_t>(i)];
    if (count == 0) continue;
    out << (first ? "" : ",") << "[" << LatencyHistogram::bucket_upper_ns(i) << "," << count << "]";
    first = false;
  }
  out << "]}";
  return out.str();
}

std::string json_escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) < 0x20) continue;
    out += c;
  }
  return out;
}

int run(const Args& args) {
  const WorkloadParams& wp = args.workload;
  std::optional<WorkloadResult> emp_result, local_result;
  core::EngineStats stats;
  PageFaults emp_faults, local_faults;
  uint64_t rss_max = 0, rss_before = 0, slack = 0;

  if (!args.local_only) {
    core::EngineConfig config;
    config.options = args.options;
    config.budget_bytes = args.local_bytes;
    // Memory the second tier can no longer return ends the run with the engine's message
    // and exit status 3 (not abort(): a benchmark's lost donor is a result, not a crash).
    config.fatal = [](const char* message) {
      std::fprintf(stderr, "emp-bench: fatal: %s\n", message);
      std::_Exit(3);
    };
    try {
      auto specs = parse_tier_list(args.tier);
#ifdef EMP_HAVE_NET
      config.pool = tier::Pool::from_specs(specs, net::make_remote_factory(args.options), args.options.replicas);
#else
      config.pool = tier::Pool::from_specs(specs, {}, args.options.replicas);
#endif
    } catch (const std::exception& error) {
      std::fprintf(stderr, "emp-bench: %s\n", error.what());
      return 2;
    }
    std::unique_ptr<core::Engine> engine;
    try {
      engine = core::Engine::create(std::move(config));
    } catch (const std::exception& error) {
      std::fprintf(stderr, "emp-bench: %s\n", error.what());
      return 2;
    }
    std::fprintf(stderr, "emp-bench: %s\n", engine->describe().c_str());
    auto memory = engine->map(args.working_set);
    if (!memory) {
      std::fprintf(stderr, "emp-bench: cannot map %s of EMP memory: %s\n", format_size(args.working_set).c_str(),
                   memory.status().to_string().c_str());
      return 2;
    }
    std::fprintf(stderr, "emp-bench: running %s on %s of EMP memory, %s local...\n", to_string(wp.pattern),
                 format_size(args.working_set).c_str(), format_size(args.local_bytes).c_str());
    rss_before = RssMonitor::current_rss();
    core::EngineStats at_start, at_end;
    WorkloadParams measured = wp;
    measured.on_run_start = [&] { at_start = engine->stats(); };
    measured.on_run_end = [&] { at_end = engine->stats(); };
    {
      RssMonitor monitor;
      emp_result = measure(*memory, args.working_set, measured, &emp_faults);
      rss_max = monitor.max_bytes();
    }
    stats = phase_delta(at_end, at_start);
    stats.peak_resident_bytes = engine->stats().peak_resident_bytes;
    slack = engine->slack();
    (void)engine->release(*memory);
  }
  if (args.baseline || args.local_only) {
    std::fprintf(stderr, "emp-bench: running %s on %s of plain (all-local) memory...\n", to_string(wp.pattern),
                 format_size(args.working_set).c_str());
    void* plain = mmap(nullptr, args.working_set, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (plain == MAP_FAILED) {
      std::fprintf(stderr, "emp-bench: cannot map %s of plain memory: %s\n", format_size(args.working_set).c_str(),
                   std::strerror(errno));
      return 2;
    }
    local_result = measure(plain, args.working_set, wp, &local_faults);
    munmap(plain, args.working_set);
  }

  const WorkloadResult& main = emp_result ? *emp_result : *local_result;
  const PageFaults& main_faults = emp_result ? emp_faults : local_faults;
  std::string failure = emp_result && !emp_result->verified ? emp_result->failure
                        : local_result && !local_result->verified ? local_result->failure
                                                                  : "";
  bool verified = (!emp_result || emp_result->verified) && (!local_result || local_result->verified);
  double ratio = emp_result && local_result && local_result->throughput() > 0
                     ? emp_result->throughput() / local_result->throughput()
                     : NAN;
  // Ideal-cache bound: local op time + miss probability × one remote fault.
  uint64_t pages = args.working_set / kPage;
  double miss = ideal_miss_ratio(wp.pattern, args.local_bytes / kPage, pages, wp.zipf_theta);
  double bound = NAN;
  if (miss >= 0 && local_result && local_result->throughput() > 0) {
    double per_op_s = 1.0 / local_result->throughput() * wp.threads + miss * args.miss_cost_us * 1e-6;
    bound = wp.threads / per_op_s;
  }

  // Human table.
  std::printf("\n%-22s %s\n", "workload", to_string(wp.pattern));
  std::printf("%-22s %u\n", "threads", wp.threads);
  std::printf("%-22s %s\n", "working set", format_size(args.working_set).c_str());
  if (emp_result) {
    std::printf("%-22s %s (%.0f%%)\n", "local DRAM", format_size(args.local_bytes).c_str(),
                100.0 * static_cast<double>(args.local_bytes) / static_cast<double>(args.working_set));
    std::printf("%-22s %s\n", "second tier", args.tier.c_str());
    std::printf("%-22s block %s, subblock %s, CSF %s\n", "EMP", format_size(args.options.block_size).c_str(),
                format_size(args.options.subblock_size).c_str(), args.options.csf ? "on" : "off");
    std::printf("%-22s %.3g %s/s (%.2f s)\n", "EMP throughput", emp_result->throughput(), emp_result->unit,
                emp_result->run_seconds);
  }
  if (local_result)
    std::printf("%-22s %.3g %s/s (%.2f s)\n", "all-local throughput", local_result->throughput(), local_result->unit,
                local_result->run_seconds);
  if (!std::isnan(ratio)) std::printf("%-22s %.3f\n", "ratio to all-local", ratio);
  if (!std::isnan(bound) && emp_result)
    std::printf("%-22s %.3g %s/s (ideal cache, miss %.1f%%, %.0f us/miss); EMP reaches %.0f%%\n", "bound",
                bound, emp_result->unit, miss * 100, args.miss_cost_us, 100 * emp_result->throughput() / bound);
  if (emp_result) {
    if (wp.pattern == Pattern::kRand || wp.pattern == Pattern::kZipf)
      std::printf("%-22s %.1f%% of operations fetched a block (ideal cache of pages: %.1f%%)\n", "miss ratio",
                  100.0 * static_cast<double>(stats.faults_fetch) / static_cast<double>(emp_result->ops), 100 * miss);
    std::printf("%-22s (measured phase only; init and verification excluded)\n", "counters");
    std::printf("%-22s %llu (zero %llu, fetch %llu, write-protect %llu); %llu blocks prefetched\n", "faults",
                (unsigned long long)stats.faults(), (unsigned long long)stats.faults_zero,
                (unsigned long long)stats.faults_fetch, (unsigned long long)stats.faults_write_protect,
                (unsigned long long)stats.prefetched);
    std::printf("%-22s p50 %.1f us, p99 %.1f us (fetch p50 %.1f us, p99 %.1f us)\n", "fault latency",
                stats.fault_latency.percentile_ns(0.5) / 1e3, stats.fault_latency.percentile_ns(0.99) / 1e3,
                stats.fetch_latency.percentile_ns(0.5) / 1e3, stats.fetch_latency.percentile_ns(0.99) / 1e3);
    std::printf("%-22s %s (us mean/p50/p99)\n", "fault stages", stats.fault_stages_text().c_str());
    std::printf("%-22s %s (us mean/p50/p99, %llu batches)\n", "eviction stages", stats.evict_stages_text().c_str(),
                (unsigned long long)stats.evict_stages[0].total());
    std::printf("%-22s %llu write-protect, %llu unmap (each one TLB shootdown)\n", "page-table calls",
                (unsigned long long)stats.write_protect_calls, (unsigned long long)stats.drop_calls);
    std::printf("%-22s %s read, %s written\n", "second-tier bytes", format_size(stats.bytes_read).c_str(),
                format_size(stats.bytes_written).c_str());
    std::printf("%-22s clean %llu, dirty %llu (batches on the fault path: %llu)\n", "evictions",
                (unsigned long long)stats.evictions_clean, (unsigned long long)stats.evictions_dirty,
                (unsigned long long)stats.evictions_direct);
    std::printf("%-22s managed peak %s (budget %s + slack %s); process RSS max %s (%s before the run)\n", "resident",
                format_size(stats.peak_resident_bytes).c_str(), format_size(args.local_bytes).c_str(),
                format_size(slack).c_str(), format_size(rss_max).c_str(), format_size(rss_before).c_str());
  }
  if (main.latency.total())
    std::printf("%-22s p50 %.2f us, p99 %.2f us, p99.9 %.2f us (%llu sampled operations, 1 in %u)\n",
                "operation latency", main.latency.percentile_ns(0.5) / 1e3, main.latency.percentile_ns(0.99) / 1e3,
                main.latency.percentile_ns(0.999) / 1e3, (unsigned long long)main.latency.total(), wp.latency_every);
  std::printf("%-22s major %llu, minor %llu (measured phase, getrusage)\n", "page faults",
              (unsigned long long)main_faults.major, (unsigned long long)main_faults.minor);
  std::printf("%-22s %s%s\n", "verified", verified ? "yes" : "NO: ", failure.c_str());

  // One JSON line.
  std::ostringstream json;
  json.precision(6);
  auto num = [](double v) { return std::isnan(v) ? std::string("null") : std::to_string(v); };
  json << "{\"verified\":" << (verified ? "true" : "false") << ",\"pattern\":\"" << to_string(wp.pattern)
       << "\",\"threads\":" << wp.threads << ",\"working_set\":" << args.working_set
       << ",\"local_bytes\":" << args.local_bytes
       << ",\"local_fraction\":" << num(static_cast<double>(args.local_bytes) / static_cast<double>(args.working_set))
       << ",\"tier\":\"" << json_escape(args.tier) << "\",\"block_size\":" << args.options.block_size
       << ",\"subblock_size\":" << args.options.subblock_size << ",\"csf\":" << (args.options.csf ? "true" : "false")
       << ",\"fault_threads\":" << args.options.fault_threads << ",\"ops\":" << main.ops << ",\"unit\":\"" << main.unit
       << "\",\"passes\":" << wp.passes << ",\"zipf_theta\":" << wp.zipf_theta << ",\"seed\":" << wp.seed
       << ",\"duration\":" << wp.duration << ",\"throughput\":" << num(main.throughput())
       << ",\"seconds\":" << num(main.run_seconds) << ",\"init_seconds\":" << num(main.init_seconds)
       << ",\"verify_seconds\":" << num(main.verify_seconds) << ",\"majflt\":" << main_faults.major
       << ",\"minflt\":" << main_faults.minor
       << ",\"local_throughput\":" << num(local_result ? local_result->throughput() : NAN)
       << ",\"ratio_to_local\":" << num(ratio) << ",\"bound_throughput\":" << num(bound)
       << ",\"ideal_miss_ratio\":" << num(miss >= 0 ? miss : NAN) << ",\"miss_cost_us\":" << args.miss_cost_us;
  if (emp_result) {
    json << ",\"miss_ratio\":"
         << static_cast<double>(stats.faults_fetch) / static_cast<double>(std::max<uint64_t>(1, emp_result->ops))
         << ",\"faults\":" << stats.faults() << ",\"faults_zero\":" << stats.faults_zero
         << ",\"faults_fetch\":" << stats.faults_fetch << ",\"faults_write_protect\":" << stats.faults_write_protect
         << ",\"fault_p50_us\":" << stats.fault_latency.percentile_ns(0.5) / 1e3
         << ",\"fault_p99_us\":" << stats.fault_latency.percentile_ns(0.99) / 1e3
         << ",\"fetch_p50_us\":" << stats.fetch_latency.percentile_ns(0.5) / 1e3
         << ",\"fetch_p99_us\":" << stats.fetch_latency.percentile_ns(0.99) / 1e3
         << ",\"bytes_read\":" << stats.bytes_read << ",\"bytes_written\":" << stats.bytes_written
         << ",\"evictions_clean\":" << stats.evictions_clean << ",\"evictions_dirty\":" << stats.evictions_dirty
         << ",\"evictions_direct\":" << stats.evictions_direct << ",\"prefetched\":" << stats.prefetched
         << ",\"peak_resident_bytes\":" << stats.peak_resident_bytes << ",\"slack_bytes\":" << slack
         << ",\"rss_max_bytes\":" << rss_max << ",\"rss_before_bytes\":" << rss_before
         << ",\"write_protect_calls\":" << stats.write_protect_calls << ",\"drop_calls\":" << stats.drop_calls
         << ",\"fault_stages\":" << stats.fault_stages_json() << ",\"evict_stages\":" << stats.evict_stages_json();
  }
  if (main.latency.total()) json << ",\"latency\":" << latency_json(main.latency, wp.latency_every);
  if (!verified) json << ",\"failure\":\"" << json_escape(failure) << "\"";
  json << "}";
  std::printf("%s\n", json.str().c_str());
  if (!args.json_file.empty()) {
    std::ofstream out(args.json_file, std::ios::app);
    out << json.str() << "\n";
  }
  return verified ? 0 : 1;
}

}  // namespace
}  // namespace emp::bench

int main(int argc, char** argv) {
  emp::bench::Args args = emp::bench::parse_args(argc, argv);
  emp::log::set_level(args.options.log_level);
  return emp::bench::run(args);
}
