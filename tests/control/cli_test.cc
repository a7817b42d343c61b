// The `emp` binary as a subprocess: stats/ls/resize/donors against this test process
// (which serves a real Engine), error exits, and `emp run` validation before exec.
#include "control_test_util.h"

#include "common/options.h"
#include "common/unique_fd.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <pty.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

namespace emp::control {
namespace {

struct Outcome {
  int status = -1;
  std::string out, err;
};

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Runs `emp args...` with stdout and stderr captured (the server thread of this
// process keeps answering meanwhile). `env` entries are added to the environment.
Outcome run_emp(const std::vector<std::string>& args, const std::vector<std::string>& env = {}) {
  std::string base = "/tmp/emp-cli-test-" + std::to_string(::getpid());
  std::string out_path = base + ".out", err_path = base + ".err";
  pid_t child = ::fork();
  if (child == 0) {
    int out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int err = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ::dup2(out, 1);
    ::dup2(err, 2);
    for (const auto& item : env) ::putenv(const_cast<char*>(item.c_str()));
    std::vector<char*> argv{const_cast<char*>(EMP_CLI_PATH)};
    for (const auto& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
    argv.push_back(nullptr);
    ::execv(EMP_CLI_PATH, argv.data());
    ::_exit(111);
  }
  Outcome outcome;
  int status = 0;
  ::waitpid(child, &status, 0);
  outcome.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  outcome.out = slurp(out_path);
  outcome.err = slurp(err_path);
  ::unlink(out_path.c_str());
  ::unlink(err_path.c_str());
  return outcome;
}

size_t lines(const std::string& text) {
  size_t n = 0;
  for (char c : text) n += c == '\n';
  return n;
}

std::string self() { return std::to_string(::getpid()); }

// The `emp ls` row whose first column is `pid`, or "".
std::string row_of(const std::string& table, const std::string& pid) {
  std::istringstream rows(table);
  for (std::string row; std::getline(rows, row);) {
    std::istringstream words(row);
    std::string first;
    words >> first;
    if (first == pid) return row;
  }
  return "";
}

TEST(EmpCli, StatsOfThisProcess) {
  EMP_SERVED_ENGINE_OR_SKIP(served, 8 << 20, false);
  auto memory = served.engine->map(16 << 20);
  ASSERT_TRUE(memory);
  touch(*memory, 16 << 20);
  Outcome table = run_emp({"stats", self()});
  EXPECT_EQ(table.status, 0) << table.err;
  for (const char* word : {"faults", "fault latency", "evictions", "local DRAM", "managed", "second tier", "file:"})
    EXPECT_NE(table.out.find(word), std::string::npos) << word << "\n" << table.out;
  Outcome json = run_emp({"stats", self(), "--json"});
  EXPECT_EQ(json.status, 0) << json.err;
  auto reply = JsonValue::parse(json.out);
  ASSERT_TRUE(reply) << json.out;
  const JsonValue* stats = reply->find("stats");
  EXPECT_GE(stats->u64("faults") + stats->u64("prefetched"), (16u << 20) / served.engine->options().block_size);
  ASSERT_TRUE(served.engine->release(*memory));
}

TEST(EmpCli, WatchRefreshesUntilInterrupted) {
  EMP_SERVED_ENGINE_OR_SKIP(served, 8 << 20, false);
  std::string out_path = "/tmp/emp-cli-watch-" + self();
  pid_t child = ::fork();
  if (child == 0) {
    int out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ::dup2(out, 1);
    std::string pid = std::to_string(::getppid());
    ::execl(EMP_CLI_PATH, EMP_CLI_PATH, "stats", pid.c_str(), "--json", "--watch", "0.2", nullptr);
    ::_exit(111);
  }
  // Until three refreshes are out (at most 10 s), then Ctrl-C.
  for (int waited = 0; waited < 1000 && lines(slurp(out_path)) < 3; ++waited) ::poll(nullptr, 0, 10);
  ::kill(child, SIGINT);
  int status = 0;
  ::waitpid(child, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  std::string out = slurp(out_path);
  ::unlink(out_path.c_str());
  EXPECT_GE(lines(out), 3u) << out;
  EXPECT_TRUE(JsonValue::parse(out.substr(0, out.find('\n'))));
}

TEST(EmpCli, LsListsThisProcess) {
  EMP_SERVED_ENGINE_OR_SKIP(served, 8 << 20, false);
  Outcome ls = run_emp({"ls"});
  EXPECT_EQ(ls.status, 0) << ls.err;
  EXPECT_NE(ls.out.find("PID"), std::string::npos) << ls.out;
  std::string row = row_of(ls.out, self());
  ASSERT_FALSE(row.empty()) << ls.out;
  EXPECT_NE(row.find("8 MiB"), std::string::npos) << row;
  EXPECT_NE(row.find("file:"), std::string::npos) << row;
  Outcome json = run_emp({"ls", "--json"});
  EXPECT_EQ(json.status, 0) << json.err;
  auto list = JsonValue::parse(json.out);
  ASSERT_TRUE(list && list->is_array()) << json.out;
  bool listed = false;
  for (const auto& item : list->items()) listed |= item.u64("pid") == static_cast<uint64_t>(::getpid());
  EXPECT_TRUE(listed) << json.out;
  served.server.reset();
  Outcome after = run_emp({"ls"});
  EXPECT_EQ(row_of(after.out, self()), "") << after.out;
}

TEST(EmpCli, ResizeAndDonors) {
  EMP_SERVED_ENGINE_OR_SKIP(served, 8 << 20, false);
  Outcome resize = run_emp({"resize", self(), "--dram", "24M"});
  EXPECT_EQ(resize.status, 0) << resize.err;
  EXPECT_EQ(served.engine->budget(), 24u << 20);
  EXPECT_NE(resize.out.find("budget 24 MiB"), std::string::npos) << resize.out;
  EXPECT_NE(resize.out.find("was 8 MiB"), std::string::npos) << resize.out;
  resize = run_emp({"resize", self(), "--dram=16"});  // bare number: MiB
  EXPECT_EQ(resize.status, 0) << resize.err;
  EXPECT_EQ(served.engine->budget(), 16u << 20);
  resize = run_emp({"resize", self(), "--dram", "auto"});
  EXPECT_EQ(resize.status, 1);
  EXPECT_NE(resize.err.find("dram:auto"), std::string::npos) << resize.err;
  EXPECT_EQ(lines(resize.err), 1u) << resize.err;

  Outcome donors = run_emp({"donors", self()});
  EXPECT_EQ(donors.status, 0) << donors.err;
  EXPECT_NE(donors.out.find("file"), std::string::npos) << donors.out;
  EXPECT_NE(donors.out.find("healthy"), std::string::npos) << donors.out;
  Outcome json = run_emp({"donors", self(), "--json"});
  EXPECT_EQ(json.status, 0);
  EXPECT_TRUE(JsonValue::parse(json.out)) << json.out;
}

TEST(EmpCli, ErrorsAreOneLineWithUsageOrRuntimeStatus) {
  EMP_SERVED_ENGINE_OR_SKIP(served, 8 << 20, false);
  pid_t dead = ::fork();
  if (dead == 0) ::_exit(0);
  ::waitpid(dead, nullptr, 0);
  struct Case {
    std::vector<std::string> args;
    int status;
    const char* words;
  };
  std::vector<Case> cases = {
      {{"bogus"}, 2, "unknown command"},
      {{}, 2, "usage"},
      {{"stats"}, 2, "missing the process id"},
      {{"stats", "abc"}, 2, "not a process id"},
      {{"stats", "0"}, 2, "not a process id"},
      {{"stats", self(), "--bogus"}, 2, "unknown argument"},
      {{"stats", self(), "--watch", "0"}, 2, "--watch"},
      {{"ls", "extra"}, 2, "unknown argument"},
      {{"resize", self()}, 2, "--dram"},
      {{"resize", self(), "--dram", "lots"}, 2, "not a size"},
      {{"resize", self(), "--dram", "0"}, 2, "not a size"},
      {{"stats", std::to_string(dead)}, 1, "no process"},
      {{"stats", "1"}, 1, "not an EMP process"},
      {{"donors", "1"}, 1, "not an EMP process"},
      {{"resize", "1", "--dram", "1G"}, 1, "not an EMP process"},
  };
  if (::getpid() == 1) cases.pop_back();
  for (const auto& c : cases) {
    Outcome o = run_emp(c.args);
    std::string shown;
    for (const auto& a : c.args) shown += a + " ";
    EXPECT_EQ(o.status, c.status) << shown << ": " << o.err;
    if (c.args.empty()) continue;  // bare `emp` prints the whole usage text
    EXPECT_EQ(lines(o.err), 1u) << shown << ": " << o.err;
    EXPECT_NE(o.err.find(c.words), std::string::npos) << shown << ": " << o.err;
    EXPECT_EQ(o.err.rfind("emp", 0), 0u) << o.err;
  }
  EXPECT_EQ(served.engine->budget(), 8u << 20);
}

TEST(EmpCli, PermissionDeniedForAnotherUser) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to run emp as another uid";
  EMP_SERVED_ENGINE_OR_SKIP(served, 8 << 20, false);
  std::string out_path = "/tmp/emp-cli-nobody-" + self();
  pid_t child = ::fork();
  if (child == 0) {
    int err = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0666);
    ::dup2(err, 2);
    if (::setresgid(65534, 65534, 65534) != 0 || ::setresuid(65534, 65534, 65534) != 0) ::_exit(90);
    std::string pid = std::to_string(::getppid());
    ::execl(EMP_CLI_PATH, EMP_CLI_PATH, "stats", pid.c_str(), nullptr);
    ::_exit(111);
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  std::string err = slurp(out_path);
  ::unlink(out_path.c_str());
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << status << " " << err;
  EXPECT_NE(err.find("another user"), std::string::npos) << err;
  EXPECT_EQ(lines(err), 1u) << err;
}

// Every sample line of a Prometheus text exposition: name{labels} value.
void expect_prometheus_text(const std::string& text) {
  static const std::regex sample(R"(^[a-z_]+(\{[^}]*\})? -?[0-9.e+-]+$)");
  std::istringstream lines_of(text);
  for (std::string line; std::getline(lines_of, line);) {
    if (line.rfind("# HELP ", 0) == 0 || line.rfind("# TYPE ", 0) == 0) continue;
    EXPECT_TRUE(std::regex_match(line, sample)) << line;
  }
}

TEST(EmpCli, MetricsInThePrometheusTextFormat) {
  EMP_SERVED_ENGINE_OR_SKIP(served, 8 << 20, false);
  auto memory = served.engine->map(16 << 20);
  ASSERT_TRUE(memory);
  touch(*memory, 16 << 20);
  Outcome metrics = run_emp({"metrics"});
  ASSERT_EQ(metrics.status, 0) << metrics.err;
  expect_prometheus_text(metrics.out);
  const std::string pid = "pid=\"" + self() + "\"";
  for (const char* family : {"# TYPE emp_faults_total counter", "# TYPE emp_evictions_total counter",
                             "# TYPE emp_resident_bytes gauge", "# TYPE emp_fault_latency_seconds histogram",
                             "# TYPE emp_fetch_latency_seconds histogram", "# TYPE emp_tier_read_bytes_total counter"})
    EXPECT_NE(metrics.out.find(family), std::string::npos) << family;
  // This process's samples: faults happened, and the histogram's +Inf bucket is its count.
  std::regex zero_faults("emp_faults_total\\{" + pid + ",program=\"[^\"]*\",kind=\"zero\"\\} ([0-9]+)");
  std::smatch found;
  ASSERT_TRUE(std::regex_search(metrics.out, found, zero_faults)) << metrics.out;
  EXPECT_GT(std::stoull(found[1]), 0u);
  std::regex infinite("emp_fault_latency_seconds_bucket\\{" + pid + ",program=\"[^\"]*\",le=\"\\+Inf\"\\} ([0-9]+)");
  std::regex count("emp_fault_latency_seconds_count\\{" + pid + ",program=\"[^\"]*\"\\} ([0-9]+)");
  std::smatch infinite_found, count_found;
  ASSERT_TRUE(std::regex_search(metrics.out, infinite_found, infinite));
  ASSERT_TRUE(std::regex_search(metrics.out, count_found, count));
  EXPECT_EQ(infinite_found[1], count_found[1]);
  EXPECT_GT(std::stoull(count_found[1]), 0u);

  // --listen: the same over HTTP, until SIGTERM.
  UniqueFd probe(::socket(AF_INET, SOCK_STREAM, 0));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  ASSERT_EQ(::bind(probe.get(), reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  ASSERT_EQ(::getsockname(probe.get(), reinterpret_cast<sockaddr*>(&address), &length), 0);
  probe.reset();  // a free port
  std::string where = "127.0.0.1:" + std::to_string(ntohs(address.sin_port));
  pid_t server = ::fork();
  if (server == 0) {
    int null = ::open("/dev/null", O_WRONLY);
    ::dup2(null, 1);
    ::execl(EMP_CLI_PATH, EMP_CLI_PATH, "metrics", "--listen", where.c_str(), nullptr);
    ::_exit(111);
  }
  std::string response;
  for (int attempt = 0; attempt < 500 && response.empty(); ++attempt) {  // until it listens (at most 5 s)
    UniqueFd connection(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (::connect(connection.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
      ::poll(nullptr, 0, 10);
      continue;
    }
    const char request[] = "GET /metrics HTTP/1.0\r\n\r\n";
    ASSERT_EQ(::send(connection.get(), request, sizeof request - 1, 0), static_cast<ssize_t>(sizeof request - 1));
    char buffer[4096];
    for (ssize_t n; (n = ::recv(connection.get(), buffer, sizeof buffer, 0)) > 0;) response.append(buffer, n);
  }
  ::kill(server, SIGTERM);
  int status = 0;
  ::waitpid(server, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_EQ(response.rfind("HTTP/1.0 200 OK", 0), 0u) << response.substr(0, 200);
  EXPECT_NE(response.find("Content-Type: text/plain; version=0.0.4"), std::string::npos);
  EXPECT_NE(response.find("emp_faults_total{" + pid), std::string::npos);
  size_t body = response.find("\r\n\r\n");
  ASSERT_NE(body, std::string::npos);
  expect_prometheus_text(response.substr(body + 4));
  ASSERT_TRUE(served.engine->release(*memory));
}

// Reads the terminal's output until `text` appears (or 10 s pass); returns all read so far.
std::string read_until(int terminal, const std::string& text, std::string* seen) {
  for (int waited = 0; waited < 1000 && seen->find(text) == std::string::npos; ++waited) {
    pollfd fd{terminal, POLLIN, 0};
    if (::poll(&fd, 1, 10) <= 0) continue;
    char buffer[4096];
    ssize_t n = ::read(terminal, buffer, sizeof buffer);
    if (n <= 0) break;
    seen->append(buffer, static_cast<size_t>(n));
  }
  return *seen;
}

int wait_exit(pid_t child, int terminal) {
  std::string rest;
  read_until(terminal, "\x01never", &rest);  // drains until the child closes the terminal
  int status = 0;
  ::waitpid(child, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

TEST(EmpCli, TopShowsEveryProcessSortsAndQuitsCleanly) {
  EMP_SERVED_ENGINE_OR_SKIP(served, 8 << 20, false);
  Outcome plain = run_emp({"top", "--plain", "--iterations", "2", "--interval", "0.1"});
  EXPECT_EQ(plain.status, 0) << plain.err;
  size_t tables = 0;
  for (size_t at = plain.out.find("emp top "); at != std::string::npos; at = plain.out.find("emp top ", at + 1)) ++tables;
  EXPECT_EQ(tables, 2u) << plain.out;
  EXPECT_FALSE(row_of(plain.out, self()).empty()) << plain.out;
  EXPECT_NE(plain.out.find("RESIDENT / BUDGET"), std::string::npos);
  EXPECT_EQ(run_emp({"top", "--sort", "colour"}).status, 2);

  // On a terminal: redraws, a key changes the order, q quits; Ctrl-C quits too.
  for (const char* quit : {"q", "\x03"}) {
    int terminal = -1;
    pid_t child = ::forkpty(&terminal, nullptr, nullptr, nullptr);
    ASSERT_GE(child, 0);
    if (child == 0) {
      ::execl(EMP_CLI_PATH, EMP_CLI_PATH, "top", "--interval", "0.1", nullptr);
      ::_exit(111);
    }
    std::string seen;
    EXPECT_NE(read_until(terminal, "sorted by faults/s", &seen).find(self()), std::string::npos) << seen;
    ASSERT_EQ(::write(terminal, "r", 1), 1);
    EXPECT_NE(read_until(terminal, "sorted by resident", &seen).find("sorted by resident"), std::string::npos);
    ASSERT_EQ(::write(terminal, quit, 1), 1);
    EXPECT_EQ(wait_exit(child, terminal), 0) << (quit[0] == 'q' ? "q" : "Ctrl-C");
    ::close(terminal);
  }
}

TEST(EmpCli, HelpTellsTheCommands) {
  Outcome help = run_emp({"--help"});
  EXPECT_EQ(help.status, 0);
  for (const char* word :
       {"emp run", "emp ls", "emp stats", "emp resize", "emp donors", "emp metrics", "emp top", "exit status"})
    EXPECT_NE(help.out.find(word), std::string::npos) << word;
  Outcome run_help = run_emp({"run", "--help"});
  EXPECT_EQ(run_help.status, 0);
  for (const auto& info : option_table())
    if (!info.flag.empty()) {
      EXPECT_NE(run_help.out.find("--" + std::string(info.flag)), std::string::npos) << info.flag;
    }
  for (const char* command : {"ls", "stats", "resize", "donors", "metrics", "top"}) {
    Outcome o = run_emp({command, "--help"});
    EXPECT_EQ(o.status, 0) << command;
    EXPECT_NE(o.out.find(std::string("usage: emp ") + command), std::string::npos) << o.out;
  }
  EXPECT_EQ(run_emp({"help", "resize"}).out, run_emp({"resize", "--help"}).out);
}

// ---- emp run ----------------------------------------------------------------------------

TEST(EmpRun, BadInputStopsBeforeExecWithOneLine) {
  std::string marker = "/tmp/emp-run-marker-" + self();
  std::vector<std::string> touch_marker = {"--", "/bin/sh", "-c", "echo ran > " + marker};
  struct Case {
    std::vector<std::string> flags;
    const char* words;
  };
  std::vector<Case> cases = {
      {{"--mem-path", "bogus:1"}, "bogus:1"},
      {{"--mem-path", "dram:0"}, "dram:0"},
      {{"--mem-path", "dram:64|/var/tmp/x.tier:0:0"}, "/var/tmp/x.tier:0:0"},
      {{"--mem-path", "dram:64", "--block-size", "3K"}, "EMP_BLOCK_SIZE"},
      {{"--mem-path", "dram:64", "--block-size", "16K", "--subblock-size", "64K"}, "EMP_SUBBLOCK_SIZE"},
      {{"--mem-path", "dram:64", "--replicas", "9"}, "EMP_REPLICAS"},
      {{"--mem-path", "dram:64", "--csf=maybe"}, "EMP_CSF"},
      {{"--mem-path", "dram:64", "--frobnicate"}, "--frobnicate"},
      {{"--mem-path"}, "--mem-path needs a value"},
      {{}, "memory path"},
  };
  for (auto& c : cases) {
    std::vector<std::string> args = {"run"};
    args.insert(args.end(), c.flags.begin(), c.flags.end());
    if (!c.flags.empty() && c.flags.back() == "--mem-path") {
      // the value is missing: nothing may follow
    } else {
      args.insert(args.end(), touch_marker.begin(), touch_marker.end());
    }
    Outcome o = run_emp(args, {"EMP_MEM_PATH=", "EMP_PRELOAD=/lib/x86_64-linux-gnu/libm.so.6"});
    EXPECT_EQ(o.status, 2) << c.words << ": " << o.err;
    EXPECT_EQ(lines(o.err), 1u) << o.err;
    EXPECT_NE(o.err.find(c.words), std::string::npos) << o.err;
    EXPECT_NE(::access(marker.c_str(), F_OK), 0) << "the command ran despite " << c.words;
    ::unlink(marker.c_str());
  }
  Outcome none = run_emp({"run", "--mem-path", "dram:64"});
  EXPECT_EQ(none.status, 2);
  EXPECT_NE(none.err.find("no command"), std::string::npos) << none.err;
}

TEST(EmpRun, ExportsTheOptionsAndPreloadsThenExecs) {
  if (!testing::kRssReflectsEmp)  // i.e. a sanitizer build: its runtime must be the first library loaded
    GTEST_SKIP() << "a sanitizer-built program cannot run with another library preloaded before its runtime";
  // Any loadable library stands in for libemp.so here (the preload suite runs the real one).
  const char* stand_in = nullptr;
  for (const char* candidate : {"/lib/x86_64-linux-gnu/libm.so.6", "/usr/lib64/libm.so.6", "/lib64/libm.so.6"})
    if (::access(candidate, R_OK) == 0) stand_in = candidate;
  if (!stand_in) GTEST_SKIP() << "no libm.so.6 to stand in for libemp.so";
  char resolved[PATH_MAX];
  std::string preload = ::realpath(stand_in, resolved) ? resolved : stand_in;
  std::string previous = preload;
  for (const char* candidate : {"/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib64/libc.so.6", "/lib64/libc.so.6"})
    if (::access(candidate, R_OK) == 0) previous = candidate;
  Outcome o = run_emp({"run", "--mem-path", "dram:64|/var/tmp/emp-x.tier:128:0", "--block-size", "16K", "--no-csf",
                       "--stats", "--preload", stand_in, "--", "/bin/sh", "-c",
                       "echo \"$EMP_MEM_PATH;$EMP_BLOCK_SIZE;$EMP_CSF;$EMP_STATS;$EMP_PRELOAD;$LD_PRELOAD\"; exit 7"},
                      {"LD_PRELOAD=" + previous, "EMP_PRELOAD=/elsewhere.so"});
  EXPECT_EQ(o.status, 7) << o.err;
  EXPECT_EQ(o.out, "dram:64|/var/tmp/emp-x.tier:128:0;16K;0;1;;" + preload + ":" + previous + "\n") << o.err;

  Outcome missing = run_emp({"run", "--mem-path", "dram:64", "--preload", "/nonexistent/libemp.so", "--", "true"});
  EXPECT_EQ(missing.status, 1);
  EXPECT_NE(missing.err.find("/nonexistent/libemp.so"), std::string::npos) << missing.err;
  Outcome no_command = run_emp({"run", "--mem-path", "dram:64", "--preload", stand_in, "--", "/nonexistent/cmd"});
  EXPECT_EQ(no_command.status, 127);
  EXPECT_NE(no_command.err.find("/nonexistent/cmd"), std::string::npos) << no_command.err;
}

}  // namespace
}  // namespace emp::control
