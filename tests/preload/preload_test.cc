// Real programs under libemp.so, each with a quarter or less of its working set in local
// DRAM and a file tier or a loopback vmd behind it, each checking its own output: our
// probe program (threads, fork, munmap, mremap, madvise, realloc, 10,000 mappings,
// mprotect), Python, sort, redis, a program inside new namespaces, and the start-up
// errors (each one line and a non-zero exit before main runs).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "os/userfaultfd.h"
#include "testing/engine_fixture.h"
#include "testing/subprocess.h"
#include "vmd_process.h"

namespace emp::testing {
namespace {

using namespace std::chrono_literals;

std::string skip_reason_for_userfaultfd() {
  try {
    (void)os::Userfaultfd::open({});
    return "";
  } catch (const std::exception& e) {
    return std::string("userfaultfd is not available here: ") + e.what();
  }
}

bool have_program(const std::string& name) {
  return run_process({"sh", "-c", "command -v " + name}, {}, 10s).ok();
}

class PreloadTest : public ::testing::Test {
 protected:
  void SetUp() override {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    GTEST_SKIP() << "a sanitizer-built libemp.so cannot be preloaded into uninstrumented programs (its runtime must "
                    "come first); these tests run in the release and debug presets";
#endif
    if (std::string reason = skip_reason_for_userfaultfd(); !reason.empty()) GTEST_SKIP() << reason;
    tier_ = temp_tier_path("preload");
  }
  void TearDown() override {
    if (!tier_.empty()) std::filesystem::remove(tier_);
  }
  std::vector<std::string> emp_env(const std::string& mem_path) const {
    return {std::string("LD_PRELOAD=") + EMP_LIBEMP_PATH, "EMP_MEM_PATH=" + mem_path};
  }
  std::vector<std::string> file_env(uint64_t dram_mib, uint64_t tier_mib = 1024) const {
    return emp_env("dram:" + std::to_string(dram_mib) + "|" + tier_ + ":" + std::to_string(tier_mib) + ":0");
  }
  // Runs the same command without and with EMP; both must succeed with the same output.
  void expect_same_output(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                          std::chrono::seconds timeout) {
    ProcessResult plain = run_process(argv, {}, timeout);
    ASSERT_TRUE(plain.ok()) << plain.describe();
    ProcessResult managed = run_process(argv, env, timeout);
    ASSERT_TRUE(managed.ok()) << managed.describe();
    EXPECT_EQ(managed.output, plain.output);
    std::printf("plain %.1f s, under EMP %.1f s\n", plain.seconds, managed.seconds);
  }
  std::string tier_;
};

// --- the probe's scenarios, 64 MiB each with 16 MiB of local DRAM --------------------

class ProbeScenario : public PreloadTest, public ::testing::WithParamInterface<const char*> {};

TEST_P(ProbeScenario, PassesUnderEmp) {
  std::string scenario = GetParam();
  ProcessResult result = run_process({EMP_PROBE_PATH, scenario, "64"}, file_env(16), 300s);
  ASSERT_TRUE(result.ok()) << result.describe();
  EXPECT_NE(result.output.find("OK " + scenario), std::string::npos) << result.output;
}

INSTANTIATE_TEST_SUITE_P(Preload, ProbeScenario,
                         ::testing::Values("threads", "fork", "munmap", "mremap", "madvise", "realloc", "mappings",
                                           "protect", "heap", "remap", "vmasplit", "forksignal"),
                         [](const auto& param_info) { return std::string(param_info.param); });

TEST_F(PreloadTest, ProbeScenariosAlsoPassWithoutEmp) {
  // The probe itself is right: every scenario passes on plain memory too.
  for (const char* scenario : {"fork", "munmap", "mremap", "madvise", "protect"}) {
    ProcessResult result = run_process({EMP_PROBE_PATH, scenario, "16"}, {}, 120s);
    EXPECT_TRUE(result.ok()) << scenario << ": " << result.describe();
  }
}

TEST_F(PreloadTest, ChildrenThatExecInheritEmpOnlyThroughTheEnvironment) {
  auto env = file_env(16);
  env.push_back("EMP_STATS=1");
  // The shell and its child both run under EMP (each prints its statistics)...
  ProcessResult both = run_process({"sh", "-c", "/bin/true; echo done"}, env, 60s);
  ASSERT_TRUE(both.ok()) << both.describe();
  size_t count = 0;
  for (size_t at = 0; (at = both.output.find("EMP statistics", at)) != std::string::npos; ++at) ++count;
  EXPECT_GE(count, 1u) << both.output;
  // ...but a child started without the variable does not.
  ProcessResult child = run_process({"sh", "-c", "env -u EMP_MEM_PATH -u EMP_STATS sh -c 'echo child'"}, env, 60s);
  ASSERT_TRUE(child.ok()) << child.describe();
  EXPECT_NE(child.output.find("child"), std::string::npos);
}

TEST_F(PreloadTest, GuestRamModeKeepsEmpOutOfChildren) {
  // emp-qemu's mode: the process itself runs under EMP, the programs it starts do not.
  auto env = file_env(16);
  env.push_back("EMP_GUEST_RAM=64M");
  env.push_back("EMP_LOG_LEVEL=info");
  ProcessResult result = run_process({"sh", "-c", "env | grep -E '^(EMP_|LD_PRELOAD=)' ; echo child-done"}, env, 60s);
  ASSERT_TRUE(result.ok()) << result.describe();
  EXPECT_NE(result.output.find("guest-RAM mode"), std::string::npos) << "EMP did not start in the shell: " << result.output;
  EXPECT_NE(result.output.find("child-done"), std::string::npos);
  EXPECT_NE(result.output.find("EMP_LOG_LEVEL=info"), std::string::npos) << "the child's environment: " << result.output;
  EXPECT_EQ(result.output.find("EMP_MEM_PATH"), std::string::npos) << result.output;
  EXPECT_EQ(result.output.find("LD_PRELOAD"), std::string::npos) << result.output;
}

// --- real programs ---------------------------------------------------------------------

TEST_F(PreloadTest, PythonBuildsAndChecksumsAGigabyteOfObjects) {
  if (!have_program("python3")) GTEST_SKIP() << "python3 is not installed";
  // ~1 GiB of dict and list objects (RSS measured on plain memory: ~1 GiB), 256 MiB local.
  const char* script =
      "import hashlib\n"
      "n = 1_500_000\n"
      "d = {i: str(i) * 20 for i in range(n)}\n"
      "l = [d[i] + 'x' for i in range(n)]\n"
      "h = hashlib.sha256()\n"
      "for i in range(n): h.update(d[i].encode()); h.update(l[i].encode())\n"
      "import resource\n"
      "print(len(d), len(l), h.hexdigest())\n";
  expect_same_output({"python3", "-c", script}, file_env(256, 4096), 600s);
}

TEST_F(PreloadTest, SortMatchesTheAllLocalOutput) {
  if (!have_program("sort")) GTEST_SKIP() << "sort is not installed";
  std::string input = temp_tier_path("sort-input");
  {
    std::ofstream out(input);
    uint64_t x = 88172645463325252ULL;
    for (int i = 0; i < 250'000; ++i) {  // ~18 MiB of lines; sort's RSS ~35 MiB
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      out << x << ' ' << (x % 1000003) << " the quick brown fox jumps over the lazy dog\n";
    }
  }
  std::vector<std::string> argv = {"sh", "-c", "sort -S 600M --parallel=2 " + input + " | sha256sum"};
  // A quarter of sort's RSS local; 4 KiB blocks suit its random access.
  auto env = file_env(8, 1024);
  env.push_back("EMP_BLOCK_SIZE=4K");
  env.push_back("EMP_SUBBLOCK_SIZE=4K");
  expect_same_output(argv, env, 600s);
  std::filesystem::remove(input);
}

// redis-server loaded with `keys` values of 1000 bytes under `dram_mib` of local DRAM, then
// redis-benchmark GETs and a full read-back of every value.
void run_redis(PreloadTest* test, const std::vector<std::string>& env, int keys) {
  (void)test;
  if (!have_program("redis-server") || !have_program("redis-benchmark") || !have_program("python3"))
    GTEST_SKIP() << "redis-server, redis-benchmark or python3 is not installed (Debian: redis-server, redis-tools)";
  int port = 20000 + static_cast<int>(getpid() % 20000);
  std::string script = std::string(EMP_TESTS_SOURCE_DIR) + "/preload/redis_check.py";
  // redis runs in the background of one shell; the shell stops it at the end.
  std::string command =
      "redis-server --port " + std::to_string(port) +
      " --bind 127.0.0.1 --save '' --appendonly no --daemonize no --protected-mode no --loglevel warning & "
      "pid=$!; trap 'kill $pid 2>/dev/null' EXIT; "
      "for i in $(seq 100); do redis-cli -p " + std::to_string(port) + " ping >/dev/null 2>&1 && break; sleep 0.2; done; "
      "python3 " + script + " load " + std::to_string(port) + " " + std::to_string(keys) + " && "
      "redis-benchmark -p " + std::to_string(port) + " -t get -n 100000 -r " + std::to_string(keys) +
      " -P 16 -q && python3 " + script + " check " + std::to_string(port) + " " + std::to_string(keys) +
      " && redis-cli -p " + std::to_string(port) + " info memory | grep used_memory_rss_human";
  // Only redis-server runs under EMP; the shell, redis-cli, redis-benchmark and python do not.
  std::vector<std::string> shell_env = {"REDIS_EMP_PRELOAD=" + env[0].substr(env[0].find('=') + 1),
                                        "REDIS_EMP_MEM_PATH=" + env[1].substr(env[1].find('=') + 1)};
  std::string wrapped = "LD_PRELOAD=$REDIS_EMP_PRELOAD EMP_MEM_PATH=$REDIS_EMP_MEM_PATH EMP_STATS=1 " + command;
  ProcessResult result = run_process({"bash", "-c", wrapped}, shell_env, 1200s);
  ASSERT_TRUE(result.ok()) << result.describe();
  EXPECT_NE(result.output.find("checked " + std::to_string(keys) + " values"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("GET:"), std::string::npos) << result.output;
  std::printf("%s\n", result.output.c_str());
}

TEST_F(PreloadTest, RedisServesEveryValueBackWithAQuarterLocal) {
  run_redis(this, file_env(64, 2048), 250'000);  // ~300 MiB of RSS, 64 MiB local
}

TEST_F(PreloadTest, HeavyRedisOneGigabyteWithAQuarterLocal) {
  if (!std::getenv("EMP_HEAVY_TESTS")) GTEST_SKIP() << "set EMP_HEAVY_TESTS=1 (make test-heavy) for the 1 GiB redis run";
  run_redis(this, file_env(256, 4096), 1'000'000);
}

// A program under EMP inside new user, PID and mount namespaces: a container stand-in.
TEST_F(PreloadTest, RunsInsideNewUserPidAndMountNamespaces) {
  if (!have_program("unshare")) GTEST_SKIP() << "unshare (util-linux) is not installed";
  ProcessResult probe = run_process({"unshare", "--user", "--map-root-user", "--pid", "--fork", "--mount",
                                     "--mount-proc", "true"},
                                    {}, 30s);
  if (!probe.ok()) GTEST_SKIP() << "cannot create user/pid/mount namespaces here: " << probe.describe();
  // Only the program inside runs under EMP (unshare(CLONE_NEWUSER) needs a single-threaded
  // caller, as a container runtime is).
  // Its control socket goes to a directory of this test's (pids inside the namespace
  // would collide with the host's in the shared /tmp).
  auto env = file_env(16);
  std::string runtime_dir = temp_tier_path("xdg");
  std::filesystem::create_directories(runtime_dir);
  std::filesystem::permissions(runtime_dir, std::filesystem::perms::owner_all);
  ProcessResult result = run_process({"unshare", "--user", "--map-root-user", "--pid", "--fork", "--mount",
                                      "--mount-proc", "env", env[0], env[1], "XDG_RUNTIME_DIR=" + runtime_dir,
                                      EMP_PROBE_PATH, "heap", "64"},
                                     {}, 120s);
  std::filesystem::remove_all(runtime_dir);
  ASSERT_TRUE(result.ok()) << result.describe();
  EXPECT_NE(result.output.find("OK heap"), std::string::npos);
}

// --- start-up errors: one line, non-zero exit, main never runs --------------------------

void expect_startup_error(const ProcessResult& result, const std::string& needle) {
  EXPECT_NE(result.exit_code, 0) << result.describe();
  EXPECT_EQ(result.output.find("OK heap"), std::string::npos) << "main ran: " << result.output;
  EXPECT_NE(result.output.find(needle), std::string::npos) << result.output;
  // One line (the message), nothing else.
  std::string text = result.output;
  while (!text.empty() && text.back() == '\n') text.pop_back();
  EXPECT_EQ(text.find('\n'), std::string::npos) << "more than one line: " << result.output;
  EXPECT_EQ(text.rfind("emp: ", 0), 0u) << result.output;
}

TEST_F(PreloadTest, BadMemoryPathStopsBeforeMain) {
  for (const auto& [path, needle] : std::vector<std::pair<std::string, std::string>>{
           {"dram:64|nonsense", "nonsense"},
           {"dram:0|" + tier_ + ":64:0", "dram:0"},
           {"dram:64|" + tier_ + ":zero:0", "zero"},
           {"dram:64", "no second tier"},
           {"dram:64|/proc/nonexistent/dir/file:64:0", "/proc/nonexistent"}}) {
    ProcessResult result = run_process({EMP_PROBE_PATH, "heap", "1"}, emp_env(path), 60s);
    SCOPED_TRACE(path);
    expect_startup_error(result, needle);
  }
  ProcessResult bad_option = run_process({EMP_PROBE_PATH, "heap", "1"},
                                         {file_env(16)[0], file_env(16)[1], "EMP_BLOCK_SIZE=3000"}, 60s);
  expect_startup_error(bad_option, "EMP_BLOCK_SIZE");
}

TEST_F(PreloadTest, UnreachableDonorStopsBeforeMain) {
  // Nothing listens on port 1 of the loopback address.
  ProcessResult result = run_process({EMP_PROBE_PATH, "heap", "1"}, emp_env("dram:64|127.0.0.1:64:1"), 120s);
  expect_startup_error(result, "127.0.0.1");
}

TEST_F(PreloadTest, WrongAuthKeyStopsBeforeMain) {
  std::string error;
  std::string key_file = write_key_file("the donor's key");
  auto args = vmd_device_args();
  for (const char* a : {"-m", "64", "--auth-key-file"}) args.push_back(a);
  args.push_back(key_file);
  auto vmd = VmdProcess::start(args, &error);
  if (!vmd) GTEST_SKIP() << "vmd did not start: " << error;
  std::string path = "dram:64|127.0.0.1:64:" + std::to_string(vmd->port());
  auto env = emp_env(path);
  env.push_back("EMP_AUTH_KEY=not the donor's key");
  expect_startup_error(run_process({EMP_PROBE_PATH, "heap", "1"}, env, 60s), "key");
  // With the right key the same program runs.
  env.back() = "EMP_AUTH_KEY_FILE=" + key_file;
  ProcessResult good = run_process({EMP_PROBE_PATH, "heap", "8"}, env, 120s);
  EXPECT_TRUE(good.ok()) << good.describe();
}

TEST_F(PreloadTest, UserfaultfdNotPermittedStopsBeforeMain) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to drop to an unprivileged user";
  if (!have_program("setpriv")) GTEST_SKIP() << "setpriv (util-linux) is not installed";
  std::ifstream sysctl("/proc/sys/vm/unprivileged_userfaultfd");
  int unprivileged = 0;
  sysctl >> unprivileged;
  if (unprivileged) GTEST_SKIP() << "vm.unprivileged_userfaultfd=1: every user may use userfaultfd here";
  std::string tier = "/tmp/emp-preload-nobody-" + std::to_string(getpid()) + ".tier";
  auto env = emp_env("dram:64|" + tier + ":64:0");
  ProcessResult result = run_process(
      {"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "env", env[0], env[1], EMP_PROBE_PATH, "heap", "1"},
      {}, 60s);
  std::filesystem::remove(tier);
  expect_startup_error(result, "userfaultfd");
}

}  // namespace
}  // namespace emp::testing
