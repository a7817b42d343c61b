// emp top: a live view of every EMP process on this node (cli/process_query.h), refreshed
// every interval: faults and second-tier fetches per second, the fetch latency of the
// interval (p50/p99, from the processes' histograms), resident memory against the budget,
// second-tier traffic and the health of its elements (donors, files, devices). On a
// terminal it redraws in place, sorts by a key (f, l, r, t, p) and quits on q or Ctrl-C,
// restoring the terminal; with --plain, or when stdout is not a terminal, it prints one
// table per interval (for pipes and logs), --iterations times or until interrupted.
#include <poll.h>
#include <signal.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "cli/cli.h"
#include "cli/process_query.h"
#include "common/histogram.h"
#include "common/size_parse.h"

namespace emp::cli {
namespace {

using control::JsonValue;
using Clock = std::chrono::steady_clock;

volatile sig_atomic_t g_quit = 0;
void on_signal(int) { g_quit = 1; }

enum class SortKey { kFaults, kLatency, kResident, kTraffic, kPid };

const char* sort_name(SortKey key) {
  switch (key) {
    case SortKey::kFaults: return "faults/s";
    case SortKey::kLatency: return "fetch p99";
    case SortKey::kResident: return "resident";
    case SortKey::kTraffic: return "tier traffic";
    case SortKey::kPid: return "pid";
  }
  return "?";
}

// Cumulative counters of one process at one moment.
struct Counters {
  Clock::time_point at;
  double faults = 0, fetches = 0, bytes_read = 0, bytes_written = 0;
  std::array<uint64_t, LatencyHistogram::kBuckets> fetch_buckets{};
};

Counters counters_of(const ProcessSample& process, Clock::time_point at) {
  Counters c;
  c.at = at;
  const JsonValue& s = process.stats;
  c.faults = s.number("faults") + s.number("faults_write_protect");
  c.fetches = s.number("faults_fetch");
  c.bytes_read = s.number("bytes_read");
  c.bytes_written = s.number("bytes_written");
  if (const JsonValue* h = s.find("fetch_latency_histogram"))
    if (const JsonValue* buckets = h->find("buckets"); buckets && buckets->is_array())
      for (const auto& bucket : buckets->items())
        if (bucket.is_array() && bucket.items().size() == 2) {
          int index = LatencyHistogram::bucket_of(bucket.items()[0].as_u64());
          if (index >= 0 && index < LatencyHistogram::kBuckets) c.fetch_buckets[index] = bucket.items()[1].as_u64();
        }
  return c;
}

struct Row {
  pid_t pid = 0;
  std::string user, program, health;
  double faults_per_s = -1, fetches_per_s = -1, read_per_s = -1, written_per_s = -1;
  double p50_us = -1, p99_us = -1;
  uint64_t resident = 0, budget = 0;
};

// Upper bound (µs) of the bucket holding quantile q of what was recorded between two snapshots.
double interval_quantile_us(const Counters& now, const Counters& before, double q) {
  LatencyHistogram::Snapshot delta;
  for (int i = 0; i < LatencyHistogram::kBuckets; ++i)
    delta.counts[i] = now.fetch_buckets[i] >= before.fetch_buckets[i] ? now.fetch_buckets[i] - before.fetch_buckets[i] : 0;
  if (delta.total() == 0) return -1;
  return static_cast<double>(delta.percentile_ns(q)) / 1e3;
}

// The worst health among the process's second-tier elements, with how many there are.
std::string health_of(const JsonValue& stats) {
  const JsonValue* tiers = stats.find("tiers");
  if (!tiers || !tiers->is_array() || tiers->items().empty()) return "-";
  std::string worst = "healthy";
  for (const auto& tier : tiers->items()) {
    std::string health = tier.str("health", "?");
    if (health != "healthy" && (worst == "healthy" || health == "lost")) worst = health;
  }
  return worst + " (" + std::to_string(tiers->items().size()) + ")";
}

std::string rate_text(double value) {
  if (value < 0) return "-";
  char text[32];
  if (value >= 1e6) std::snprintf(text, sizeof text, "%.1fM", value / 1e6);
  else if (value >= 1e4) std::snprintf(text, sizeof text, "%.1fk", value / 1e3);
  else std::snprintf(text, sizeof text, "%.0f", value);
  return text;
}

std::string bytes_rate_text(double value) { return value < 0 ? "-" : format_size(static_cast<uint64_t>(value)) + "/s"; }

std::string latency_text(double us) {
  if (us < 0) return "-";
  char text[32];
  std::snprintf(text, sizeof text, us >= 1000 ? "%.0f" : "%.1f", us);
  return text;
}

class Top {
 public:
  std::vector<Row> sample() {
    Clock::time_point now = Clock::now();
    std::vector<Row> rows;
    std::map<pid_t, Counters> next;
    for (const auto& process : query_all_processes()) {
      Counters c = counters_of(process, now);
      Row row;
      row.pid = process.pid;
      row.user = user_name(process.info.u64("uid"));
      row.program = process.info.str("program", "?");
      row.resident = process.stats.u64("resident_bytes");
      row.budget = process.stats.u64("budget_bytes");
      row.health = health_of(process.stats);
      if (auto it = previous_.find(process.pid); it != previous_.end()) {
        double seconds = std::chrono::duration<double>(now - it->second.at).count();
        if (seconds > 0) {
          row.faults_per_s = std::max(0.0, (c.faults - it->second.faults) / seconds);
          row.fetches_per_s = std::max(0.0, (c.fetches - it->second.fetches) / seconds);
          row.read_per_s = std::max(0.0, (c.bytes_read - it->second.bytes_read) / seconds);
          row.written_per_s = std::max(0.0, (c.bytes_written - it->second.bytes_written) / seconds);
        }
        row.p50_us = interval_quantile_us(c, it->second, 0.50);
        row.p99_us = interval_quantile_us(c, it->second, 0.99);
      }
      next[process.pid] = c;
      rows.push_back(std::move(row));
    }
    previous_ = std::move(next);
    return rows;
  }

  static void sort(std::vector<Row>& rows, SortKey key) {
    auto value = [key](const Row& r) -> double {
      switch (key) {
        case SortKey::kFaults: return r.faults_per_s;
        case SortKey::kLatency: return r.p99_us;
        case SortKey::kResident: return static_cast<double>(r.resident);
        case SortKey::kTraffic: return std::max(0.0, r.read_per_s) + std::max(0.0, r.written_per_s);
        case SortKey::kPid: return -static_cast<double>(r.pid);
      }
      return 0;
    };
    std::stable_sort(rows.begin(), rows.end(), [&](const Row& a, const Row& b) { return value(a) > value(b); });
  }

  static std::string table(const std::vector<Row>& rows) {
    char line[512];
    std::snprintf(line, sizeof line, "%7s %-9s %-15s %9s %9s %10s %10s %21s %11s %11s  %s\n", "PID", "USER", "PROGRAM",
                  "FAULTS/s", "FETCH/s", "FETCH p50", "p99 (us)", "RESIDENT / BUDGET", "TIER READ", "TIER WRITE",
                  "TIERS");
    std::string out = line;
    for (const Row& r : rows) {
      std::string memory = format_size(r.resident) + " / " + format_size(r.budget);
      std::snprintf(line, sizeof line, "%7d %-9.9s %-15.15s %9s %9s %10s %10s %21s %11s %11s  %s\n",
                    static_cast<int>(r.pid), r.user.c_str(), r.program.c_str(), rate_text(r.faults_per_s).c_str(),
                    rate_text(r.fetches_per_s).c_str(), latency_text(r.p50_us).c_str(), latency_text(r.p99_us).c_str(),
                    memory.c_str(), bytes_rate_text(r.read_per_s).c_str(), bytes_rate_text(r.written_per_s).c_str(),
                    r.health.c_str());
      out += line;
    }
    if (rows.empty()) out += "(no EMP process on this node that this user may query)\n";
    return out;
  }

 private:
  std::map<pid_t, Counters> previous_;
};

std::string clock_text() {
  time_t now = ::time(nullptr);
  struct tm local {};
  ::localtime_r(&now, &local);
  char text[16];
  std::strftime(text, sizeof text, "%H:%M:%S", &local);
  return text;
}

// Raw keys on a terminal for the interactive view; restored on every exit path.
class RawTerminal {
 public:
  RawTerminal() {
    if (::tcgetattr(STDIN_FILENO, &saved_) != 0) return;
    termios raw = saved_;
    raw.c_lflag &= static_cast<tcflag_t>(~(ICANON | ECHO));
    raw.c_cc[VMIN] = 0;
    raw.c_cc[VTIME] = 0;
    active_ = ::tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0;
  }
  ~RawTerminal() {
    if (active_) ::tcsetattr(STDIN_FILENO, TCSANOW, &saved_);
    std::fputs("\x1b[?25h\n", stdout);  // cursor back
    std::fflush(stdout);
  }
  RawTerminal(const RawTerminal&) = delete;
  RawTerminal& operator=(const RawTerminal&) = delete;

 private:
  termios saved_{};
  bool active_ = false;
};

// Waits up to `seconds` for a key on stdin; returns it, or 0 on timeout or a signal.
char wait_for_key(double seconds) {
  pollfd fd{STDIN_FILENO, POLLIN, 0};
  if (::poll(&fd, 1, static_cast<int>(seconds * 1000)) <= 0) return 0;
  char key = 0;
  return ::read(STDIN_FILENO, &key, 1) == 1 ? key : 0;
}

}  // namespace

std::string top_help() {
  return "usage: emp top [--plain] [--interval SECONDS] [--iterations N] [--sort KEY]\n"
         "\n"
         "A live view of every EMP process on this node (a user's own; root: everyone's): faults and\n"
         "second-tier fetches per second, the fetch latency of the last interval (p50, p99 in us),\n"
         "resident memory against the DRAM budget, second-tier read and write traffic, and the worst\n"
         "health among its second-tier elements (donors, files, devices) with their number.\n"
         "\n"
         "  --interval SECONDS  refresh period (default 1)\n"
         "  --sort KEY          faults (default), latency, resident, traffic or pid\n"
         "  --plain             print one table per interval instead of redrawing (also when stdout\n"
         "                      is not a terminal)\n"
         "  --iterations N      stop after N tables (default: until q, Ctrl-C or SIGTERM)\n"
         "\n"
         "Keys on a terminal: f faults/s, l fetch latency, r resident, t tier traffic, p pid; q quits.\n";
}

int top_command(const Args& args) {
  double interval = 1.0;
  long iterations = -1;
  bool plain = false;
  SortKey key = SortKey::kFaults;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    auto value = [&](const char* flag) -> std::string {
      if (i + 1 >= args.size()) throw UsageError(std::string(flag) + " needs a value");
      return args[++i];
    };
    if (arg == "--plain") {
      plain = true;
    } else if (arg == "--interval") {
      std::string text = value("--interval");
      char* end = nullptr;
      interval = std::strtod(text.c_str(), &end);
      if (!end || *end || !(interval >= 0.05 && interval <= 3600))
        throw UsageError("--interval: expected seconds between 0.05 and 3600, got '" + text + "'");
    } else if (arg == "--iterations") {
      std::string text = value("--iterations");
      char* end = nullptr;
      iterations = std::strtol(text.c_str(), &end, 10);
      if (!end || *end || iterations < 1) throw UsageError("--iterations: expected a positive count, got '" + text + "'");
    } else if (arg == "--sort") {
      std::string text = value("--sort");
      if (text == "faults") key = SortKey::kFaults;
      else if (text == "latency") key = SortKey::kLatency;
      else if (text == "resident") key = SortKey::kResident;
      else if (text == "traffic") key = SortKey::kTraffic;
      else if (text == "pid") key = SortKey::kPid;
      else throw UsageError("--sort: expected faults, latency, resident, traffic or pid, got '" + text + "'");
    } else {
      throw UsageError("unknown argument '" + arg + "'");
    }
  }
  struct sigaction action {};
  action.sa_handler = on_signal;
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  Top top;
  bool interactive = !plain && ::isatty(STDOUT_FILENO) && ::isatty(STDIN_FILENO);
  if (!interactive) {
    (void)top.sample();  // rates need a first sample
    for (long shown = 0; !g_quit && (iterations < 0 || shown < iterations); ++shown) {
      pollfd none{-1, 0, 0};
      (void)::poll(&none, 1, static_cast<int>(interval * 1000));  // returns early on a signal
      if (g_quit) break;
      std::vector<Row> rows = top.sample();
      Top::sort(rows, key);
      std::printf("emp top %s, %zu processes, sorted by %s\n%s\n", clock_text().c_str(), rows.size(),
                  sort_name(key), Top::table(rows).c_str());
      std::fflush(stdout);
    }
    return 0;
  }
  RawTerminal terminal;
  for (long shown = 0; !g_quit && (iterations < 0 || shown < iterations); ++shown) {
    std::vector<Row> rows = top.sample();
    Top::sort(rows, key);
    std::printf("\x1b[?25l\x1b[H\x1b[2J" "emp top %s, %zu processes, sorted by %s (f l r t p: sort, q: quit)\n\n%s",
                clock_text().c_str(), rows.size(), sort_name(key), Top::table(rows).c_str());
    std::fflush(stdout);
    switch (wait_for_key(interval)) {
      case 'q': case 'Q': g_quit = 1; break;
      case 'f': key = SortKey::kFaults; break;
      case 'l': key = SortKey::kLatency; break;
      case 'r': key = SortKey::kResident; break;
      case 't': key = SortKey::kTraffic; break;
      case 'p': key = SortKey::kPid; break;
      default: break;
    }
  }
  return 0;
}

}  // namespace emp::cli
