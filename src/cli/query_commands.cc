// emp ls / stats / resize / donors: talk to running EMP processes over their control
// sockets (control/control_client.h) and print tables or the raw JSON.
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "cli/cli.h"
#include "common/size_parse.h"
#include "control/control_client.h"
#include "control/socket_location.h"

namespace emp::cli {

std::string user_name(uint64_t uid) {
  if (struct passwd* pw = ::getpwuid(static_cast<uid_t>(uid))) return pw->pw_name;
  return std::to_string(uid);
}

namespace {

using control::ControlClient;
using control::ControlClientError;
using control::JsonValue;

volatile sig_atomic_t g_interrupted = 0;

std::string size_text(uint64_t bytes) { return format_size(bytes); }

std::string fit(std::string text, size_t width) {
  if (text.size() > width) text = text.substr(0, width - 1) + "~";
  return text;
}

// Parses "PID [flags...]": returns the pid, leaves the rest in *rest.
pid_t take_pid(const Args& args, Args* rest, const char* usage) {
  pid_t pid = 0;
  for (const auto& arg : args) {
    if (pid == 0 && !arg.empty() && arg[0] != '-') {
      pid = parse_pid(arg);
      continue;
    }
    rest->push_back(arg);
  }
  if (pid == 0) throw UsageError(std::string("missing the process id (") + usage + ")");
  return pid;
}

std::string percentile(const JsonValue& stats, const char* key) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f us", stats.number(key));
  return text;
}

std::string dram_line(const JsonValue& dram) {
  std::string mode = dram.str("mode", "static");
  std::string line = mode;
  const JsonValue* automatic = dram.find("auto");
  if (automatic && automatic->is_object()) {
    line += ": " + automatic->str("note");
    std::string details;
    auto add = [&details](const std::string& item) { details += (details.empty() ? "" : ", ") + item; };
    if (automatic->u64("ceiling_bytes")) add("ceiling " + size_text(automatic->u64("ceiling_bytes")));
    if (const JsonValue* limit = automatic->find("cgroup_limit_bytes"); limit && limit->is_number())
      add("cgroup limit " + size_text(limit->as_u64()));
    if (const JsonValue* available = automatic->find("mem_available_bytes"); available && available->is_number())
      add("MemAvailable " + size_text(available->as_u64()));
    if (const JsonValue* psi = automatic->find("psi_some_avg10"); psi && psi->is_number()) {
      char text[48];
      std::snprintf(text, sizeof text, "PSI some avg10 %.2f%%", psi->as_number());
      add(text);
    }
    if (!details.empty()) line += " (" + details + ")";
  }
  return line;
}

// "acquire 0.3/0.6, charge ..." from {"acquire":{"mean_us":..,"p99_us":..},...}, in order.
std::string stages_line(const JsonValue& stages) {
  std::string line;
  for (const auto& [name, stage] : stages.members()) {
    char entry[96];
    std::snprintf(entry, sizeof entry, "%s%s %.1f/%.1f", line.empty() ? "" : ", ", name.c_str(),
                  stage.number("mean_us"), stage.number("p99_us"));
    line += entry;
  }
  if (const auto& members = stages.members(); !members.empty())
    line += "  (" + std::to_string(members.front().second.u64("count")) + ")";
  return line;
}

void print_stats_table(const JsonValue& reply) {
  const JsonValue* stats = reply.find("stats");
  const JsonValue* dram = reply.find("dram");
  if (!stats || !stats->is_object() || !dram || !dram->is_object())
    throw RuntimeError("the process sent a stats reply without 'stats' and 'dram'");
  const JsonValue& s = *stats;
  std::printf("EMP process %llu\n", (unsigned long long)reply.u64("pid"));
  std::printf("  faults         %llu  (zero %llu, fetch %llu, local %llu; write-protect %llu); prefetched blocks %llu\n",
              (unsigned long long)s.u64("faults"), (unsigned long long)s.u64("faults_zero"),
              (unsigned long long)s.u64("faults_fetch"), (unsigned long long)s.u64("faults_local"),
              (unsigned long long)s.u64("faults_write_protect"), (unsigned long long)s.u64("prefetched"));
  std::printf("  fault latency  p50 %s, p99 %s   (fetch: p50 %s, p99 %s)\n", percentile(s, "fault_p50_us").c_str(),
              percentile(s, "fault_p99_us").c_str(), percentile(s, "fetch_p50_us").c_str(),
              percentile(s, "fetch_p99_us").c_str());
  std::printf("  evictions      clean %llu, dirty %llu (on the fault path %llu)\n",
              (unsigned long long)s.u64("evictions_clean"), (unsigned long long)s.u64("evictions_dirty"),
              (unsigned long long)s.u64("evictions_direct"));
  if (const JsonValue* stages = s.find("fault_stages"); stages && stages->is_object())
    std::printf("  fetch stages   %s  (us mean/p99)\n", stages_line(*stages).c_str());
  if (const JsonValue* stages = s.find("evict_stages"); stages && stages->is_object())
    std::printf("  evict batches  %s  (us mean/p99)\n", stages_line(*stages).c_str());
  if (const JsonValue* paths = s.find("paths"); paths && paths->is_object())
    std::printf("  page tables    %llu write-protect and %llu unmap calls; unmap via %s, freeze via %s\n",
                (unsigned long long)s.u64("write_protect_calls"), (unsigned long long)s.u64("drop_calls"),
                paths->str("unmap").c_str(), paths->str("write_protect").c_str());
  std::printf("  local DRAM     %s resident of %s budget (peak %s, slack %s)\n", size_text(s.u64("resident_bytes")).c_str(),
              size_text(s.u64("budget_bytes")).c_str(), size_text(s.u64("peak_resident_bytes")).c_str(),
              size_text(dram->u64("slack_bytes")).c_str());
  std::printf("  dram mode      %s\n", dram_line(*dram).c_str());
  std::printf("  managed        %s in %llu regions, metadata %s; kernel-served until needed %s (taken over %llu)\n",
              size_text(s.u64("managed_bytes")).c_str(), (unsigned long long)s.u64("regions"),
              size_text(s.u64("metadata_bytes")).c_str(), size_text(s.u64("deferred_bytes")).c_str(),
              (unsigned long long)s.u64("takeovers"));
  std::printf("  second tier    %s read, %s written; pool %s reserved of %s; io errors %llu\n",
              size_text(s.u64("bytes_read")).c_str(), size_text(s.u64("bytes_written")).c_str(),
              size_text(s.u64("pool_reserved")).c_str(), size_text(s.u64("pool_capacity")).c_str(),
              (unsigned long long)s.u64("io_errors"));
  const JsonValue* tiers = s.find("tiers");
  if (tiers && tiers->is_array() && !tiers->items().empty()) {
    std::printf("\n  %-9s %10s %10s %10s %6s  %s\n", "HEALTH", "CAPACITY", "READ", "WRITTEN", "ERRORS", "TIER");
    for (const auto& t : tiers->items())
      std::printf("  %-9s %10s %10s %10s %6llu  %s\n", t.str("health").c_str(), size_text(t.u64("capacity")).c_str(),
                  size_text(t.u64("bytes_read")).c_str(), size_text(t.u64("bytes_written")).c_str(),
                  (unsigned long long)t.u64("errors"), t.str("name").c_str());
  }
}

void on_interrupt(int) { g_interrupted = 1; }

// Sleeps up to `seconds`, returning early (false) on Ctrl-C.
bool pause_for(double seconds) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(static_cast<long long>(seconds * 1000));
  while (!g_interrupted) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
    if (left <= 0) return true;
    ::poll(nullptr, 0, static_cast<int>(std::min<long long>(left, 200)));
  }
  return false;
}

}  // namespace

// ---- emp ls ---------------------------------------------------------------------------

std::string ls_help() {
  return "usage: emp ls [--json]\n"
         "\n"
         "Lists the EMP processes on this node: pid, user, program, local DRAM budget, resident\n"
         "and managed memory, DRAM mode and second-tier elements. A user sees their own\n"
         "processes; root sees every user's (it scans /tmp/emp-*/ and /run/user/*/emp/).\n"
         "Sockets left by processes that died are removed (when permitted) and not listed.\n"
         "--json prints one JSON array of the processes' info replies.\n";
}

int ls_command(const Args& args) {
  bool json = false;
  for (const auto& arg : args) {
    if (arg == "--json") json = true;
    else throw UsageError("unknown argument '" + arg + "'");
  }
  auto directories = control::candidate_directories(::geteuid(), std::getenv("XDG_RUNTIME_DIR"));
  auto sockets = control::list_sockets(directories);
  if (json) std::printf("[");
  else
    std::printf("%7s  %-10s %-16s %10s %10s %10s  %-10s %s\n", "PID", "USER", "PROGRAM", "BUDGET", "RESIDENT", "MANAGED", "DRAM",
                "TIERS");
  bool first = true;
  for (const auto& entry : sockets) {
    try {
      ControlClient client = ControlClient::connect_path(entry.path, entry.pid, std::chrono::milliseconds(2000));
      if (json) {
        std::string raw = client.request_raw("info");
        std::printf("%s%s", first ? "" : ",", raw.c_str());
        first = false;
        continue;
      }
      JsonValue info = client.request("info");
      std::string tiers;
      if (const JsonValue* list = info.find("tiers"); list && list->is_array())
        for (const auto& t : list->items()) tiers += (tiers.empty() ? "" : ", ") + t.as_string();
      std::string mode = "static";
      if (const JsonValue* dram = info.find("dram")) mode = dram->str("mode", "static");
      std::printf("%7d  %-10s %-16s %10s %10s %10s  %-10s %s\n", static_cast<int>(entry.pid),
                  fit(user_name(info.u64("uid")), 10).c_str(), fit(info.str("program", "?"), 16).c_str(),
                  size_text(info.u64("budget_bytes")).c_str(), size_text(info.u64("resident_bytes")).c_str(),
                  size_text(info.u64("managed_bytes")).c_str(), mode.c_str(), tiers.c_str());
    } catch (const ControlClientError& e) {
      // A process that exits or a stale socket of a reused pid: not an EMP process now.
      if (e.kind == ControlClientError::Kind::kNotFound) continue;
      if (!json) std::printf("%7d  (%s)\n", static_cast<int>(entry.pid), e.what());
    }
  }
  if (json) std::printf("]\n");
  return 0;
}

// ---- emp stats -------------------------------------------------------------------------

std::string stats_help() {
  return "usage: emp stats PID [--json] [--watch [SECONDS]]\n"
         "\n"
         "Counters of the EMP process PID: faults (first-touch zero, second-tier fetch, local,\n"
         "write-protect), fault and fetch latency p50/p99, evictions (clean dropped, dirty written\n"
         "back, done on the fault path), resident vs budget vs peak, managed memory and metadata,\n"
         "bytes read/written per second-tier element, and the dram:auto state.\n"
         "\n"
         "  --json             print the process's JSON reply as is (one line)\n"
         "  --watch [SECONDS]  refresh every SECONDS (default 1) until Ctrl-C or the process ends\n";
}

int stats_command(const Args& args) {
  Args rest;
  pid_t pid = take_pid(args, &rest, "emp stats PID");
  bool json = false, watch = false;
  double interval = 1.0;
  for (size_t i = 0; i < rest.size(); ++i) {
    if (rest[i] == "--json") {
      json = true;
    } else if (rest[i] == "--watch" || rest[i].rfind("--watch=", 0) == 0) {
      watch = true;
      std::string value = rest[i].size() > 7 ? rest[i].substr(8) : std::string();
      if (value.empty() && i + 1 < rest.size() && !rest[i + 1].empty() && rest[i + 1][0] != '-') value = rest[++i];
      if (!value.empty()) {
        char* end = nullptr;
        interval = std::strtod(value.c_str(), &end);
        if (!end || *end || !std::isfinite(interval) || interval < 0.1 || interval > 3600)
          throw UsageError("--watch: '" + value + "' is not a number of seconds from 0.1 to 3600");
      }
    } else {
      throw UsageError("unknown argument '" + rest[i] + "'");
    }
  }
  if (!watch) {
    ControlClient client = ControlClient::connect_pid(pid);
    if (json) {
      std::string raw = client.request_raw("stats");
      auto reply = JsonValue::parse(raw);
      if (!reply || !reply->boolean("ok")) client.request("stats");  // throws with the server's message
      std::printf("%s\n", raw.c_str());
    } else {
      print_stats_table(client.request("stats"));
    }
    return 0;
  }
  struct sigaction action {};
  action.sa_handler = on_interrupt;
  ::sigaction(SIGINT, &action, nullptr);
  ::sigaction(SIGTERM, &action, nullptr);
  bool terminal = ::isatty(STDOUT_FILENO);
  for (int round = 0; !g_interrupted; ++round) {
    JsonValue reply;
    std::string raw;
    try {
      ControlClient client = ControlClient::connect_pid(pid);
      if (json) raw = client.request_raw("stats");
      else reply = client.request("stats");
    } catch (const ControlClientError& e) {
      if (round > 0 && e.kind == ControlClientError::Kind::kNotFound) {
        std::fprintf(stderr, "emp stats: process %d ended\n", static_cast<int>(pid));
        return 0;
      }
      throw;
    }
    if (json) {
      std::printf("%s\n", raw.c_str());
    } else {
      if (terminal) std::printf("\033[H\033[2J");
      else if (round > 0) std::printf("\n");
      print_stats_table(reply);
    }
    std::fflush(stdout);
    if (!pause_for(interval)) break;
  }
  return 0;
}

// ---- emp resize ------------------------------------------------------------------------

std::string resize_help() {
  return "usage: emp resize PID --dram SIZE|auto\n"
         "\n"
         "Changes the local DRAM budget of the EMP process PID at run time. Shrinking evicts down\n"
         "to the new budget promptly and returns the memory to the OS; growing takes effect at\n"
         "once. SIZE takes K, M, G or T suffixes (binary units); a bare number is MiB, as in the\n"
         "memory path (--dram 512 = 512M). The budget is at least four blocks.\n"
         "If the process runs with dram:auto, a manual size switches the automatic budget off;\n"
         "--dram auto switches it back on.\n";
}

int resize_command(const Args& args) {
  Args rest;
  pid_t pid = take_pid(args, &rest, "emp resize PID --dram SIZE");
  std::string size_text_arg;
  for (size_t i = 0; i < rest.size(); ++i) {
    if (rest[i] == "--dram") {
      if (i + 1 >= rest.size()) throw UsageError("--dram needs a size");
      size_text_arg = rest[++i];
    } else if (rest[i].rfind("--dram=", 0) == 0) {
      size_text_arg = rest[i].substr(7);
    } else {
      throw UsageError("unknown argument '" + rest[i] + "'");
    }
  }
  if (size_text_arg.empty()) throw UsageError("missing --dram SIZE");
  std::string request;
  if (size_text_arg == "auto" || size_text_arg == "-1") {
    request = "resize auto";
  } else {
    auto bytes = parse_size(size_text_arg, 1ULL << 20);
    if (!bytes || *bytes == 0)
      throw UsageError("--dram: '" + size_text_arg + "' is not a size (e.g. 512M, 2G, or 512 for MiB)");
    request = "resize " + std::to_string(*bytes);
  }
  ControlClient client = ControlClient::connect_pid(pid);
  uint64_t before = client.request("info").u64("budget_bytes");
  JsonValue reply = client.request(request);
  std::printf("process %d: local DRAM budget %s (was %s)\n", static_cast<int>(pid),
              format_size(reply.u64("budget_bytes")).c_str(), format_size(before).c_str());
  if (reply.has("note")) std::printf("note: %s\n", reply.str("note").c_str());
  return 0;
}

// ---- emp donors ------------------------------------------------------------------------

std::string donors_help() {
  return "usage: emp donors PID [--json]\n"
         "\n"
         "The second-tier elements of the EMP process PID: remote donors (vmd) with their\n"
         "provider, lease and reconnects, and devices or files; for each its health (healthy,\n"
         "degraded, lost), capacity and bytes/operations read and written.\n"
         "--json prints the process's JSON reply as is.\n";
}

int donors_command(const Args& args) {
  Args rest;
  pid_t pid = take_pid(args, &rest, "emp donors PID");
  bool json = false;
  for (const auto& arg : rest) {
    if (arg == "--json") json = true;
    else throw UsageError("unknown argument '" + arg + "'");
  }
  ControlClient client = ControlClient::connect_pid(pid);
  if (json) {
    std::string raw = client.request_raw("donors");
    auto parsed = JsonValue::parse(raw);
    if (!parsed || !parsed->boolean("ok")) client.request("donors");  // throws with the server's message
    std::printf("%s\n", raw.c_str());
    return 0;
  }
  JsonValue reply = client.request("donors");
  const JsonValue* tiers = reply.find("tiers");
  if (!tiers || !tiers->is_array()) throw RuntimeError("the process sent a donors reply without 'tiers'");
  std::printf("%-7s %-9s %10s %10s %10s %6s  %s\n", "KIND", "HEALTH", "CAPACITY", "READ", "WRITTEN", "ERRORS", "NAME");
  for (const auto& t : tiers->items()) {
    std::string name = t.str("name");
    if (t.str("kind") == "remote")
      name += " (" + t.str("provider") + ", lease " + std::to_string(t.u64("lease_id")) + ", " +
              std::to_string(t.u64("reconnects")) + " reconnects" + (t.boolean("data_lost") ? ", data lost once" : "") + ")";
    std::printf("%-7s %-9s %10s %10s %10s %6llu  %s\n", t.str("kind").c_str(), t.str("health").c_str(),
                size_text(t.u64("capacity")).c_str(), size_text(t.u64("bytes_read")).c_str(),
                size_text(t.u64("bytes_written")).c_str(), (unsigned long long)t.u64("errors"), name.c_str());
  }
  if (reply.u64("remote") == 0) std::printf("(no remote donors: the second tier is local)\n");
  return 0;
}

}  // namespace emp::cli
