// dram:auto under a real cgroup v1 memory limit: a child process joins a fresh memory
// cgroup, runs a real Engine with the controller, and the budget follows the limit,
// ignores EMP's own resident memory and gives way to the process's other memory.
// Needs root and the v1 memory hierarchy at /sys/fs/cgroup/memory; skips otherwise.
#include "control_test_util.h"

#include <sys/stat.h>
#include <sys/wait.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

namespace emp::control {
namespace {

constexpr uint64_t kMiB = 1ULL << 20;
const std::string kV1Root = "/sys/fs/cgroup/memory";

bool write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  out.flush();
  return static_cast<bool>(out);
}

std::string our_v1_memory_path() {
  std::ifstream in("/proc/self/cgroup");
  for (std::string line; std::getline(in, line);) {
    size_t c1 = line.find(':'), c2 = line.find(':', c1 + 1);
    if (c2 == std::string::npos) continue;
    std::string controllers = "," + line.substr(c1 + 1, c2 - c1 - 1) + ",";
    if (controllers.find(",memory,") != std::string::npos) return line.substr(c2 + 1);
  }
  return "";
}

// Runs in the child, inside the cgroup; writes one line: "SKIP reason" or the numbers.
std::string child_body(const std::string& cgroup) {
  if (!write_text(cgroup + "/cgroup.procs", std::to_string(::getpid())))
    return std::string("SKIP cannot move a process into ") + cgroup;
  testing::TempFiles files;
  testing::EngineSetup setup;
  setup.tier = testing::TierKind::kFile;
  setup.budget = 16 * kMiB;
  setup.pool_bytes = 512 * kMiB;
  std::string skip;
  auto engine = testing::make_engine(setup, &skip, &files.files);
  if (!engine) return "SKIP " + skip;
  DramAutoConfig config;
  config.start_thread = false;
  auto controller = DramAutoController::start(*engine, config);
  std::ostringstream out;
  auto record = [&] {
    controller->step();
    DramAutoState state = controller->state();
    out << engine->budget() << ' ' << state.signals.cgroup_limit.value_or(0) << ' ';
  };
  record();  // 1: limit 256 MiB, nothing resident
  const size_t emp_bytes = 96 * kMiB;
  auto memory = engine->map(emp_bytes);
  if (!memory) return "FAIL map";
  touch(*memory, emp_bytes);
  out << engine->resident() << ' ';
  record();  // 2: EMP memory resident: the budget must not move
  const size_t other_bytes = 48 * kMiB;
  char* other = static_cast<char*>(std::malloc(other_bytes));
  std::memset(other, 1, other_bytes);
  asm volatile("" : : "r"(other) : "memory");  // keep the optimiser from dropping the allocation
  record();  // 3: other memory of the process: the budget gives way
  std::free(other);
  if (!engine->release(*memory)) return "FAIL release";
  if (!write_text(cgroup + "/memory.limit_in_bytes", std::to_string(160 * kMiB))) return "FAIL lowering the limit";
  record();  // 4: a lower limit
  controller.reset();
  engine.reset();
  return out.str();
}

TEST(DramAutoCgroup, BudgetFollowsARealCgroupV1Limit) {
  if (!testing::kRssReflectsEmp)
    GTEST_SKIP() << "sanitizer shadow memory counts as the process's own memory and moves the budget";
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to create a memory cgroup";
  struct stat st;
  if (::stat((kV1Root + "/memory.limit_in_bytes").c_str(), &st) != 0)
    GTEST_SKIP() << "no cgroup v1 memory hierarchy at " << kV1Root;
  std::string parent = kV1Root + our_v1_memory_path();
  if (::stat(parent.c_str(), &st) != 0) parent = kV1Root;
  std::string cgroup = parent + "/emp-dram-auto-test-" + std::to_string(::getpid());
  if (::mkdir(cgroup.c_str(), 0755) != 0 && errno != EEXIST)
    GTEST_SKIP() << "cannot create the memory cgroup " << cgroup << ": " << std::strerror(errno);
  struct Cleanup {
    std::string path;
    ~Cleanup() { ::rmdir(path.c_str()); }
  } cleanup{cgroup};
  if (!write_text(cgroup + "/memory.limit_in_bytes", std::to_string(256 * kMiB)))
    GTEST_SKIP() << "cannot set memory.limit_in_bytes in " << cgroup;

  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  pid_t child = ::fork();
  if (child == 0) {
    ::close(fds[0]);
    std::string line;
    try {
      line = child_body(cgroup);
    } catch (const std::exception& e) {
      line = std::string("FAIL ") + e.what();
    }
    line += "\n";
    [[maybe_unused]] ssize_t n = ::write(fds[1], line.data(), line.size());
    ::_exit(0);
  }
  ::close(fds[1]);
  std::string line;
  char buffer[512];
  for (ssize_t n; (n = ::read(fds[0], buffer, sizeof buffer)) > 0 || (n < 0 && errno == EINTR);)
    if (n > 0) line.append(buffer, static_cast<size_t>(n));
  ::close(fds[0]);
  int status = 0;
  ::waitpid(child, &status, 0);
  ASSERT_TRUE(WIFEXITED(status)) << "the child died (signal " << (WIFSIGNALED(status) ? WTERMSIG(status) : 0) << ")";
  if (line.rfind("SKIP ", 0) == 0) GTEST_SKIP() << line.substr(5);
  ASSERT_NE(line.rfind("FAIL", 0), 0u) << line;
  std::istringstream in(line);
  uint64_t b1, l1, resident, b2, l2, b3, l3, b4, l4;
  ASSERT_TRUE(in >> b1 >> l1 >> resident >> b2 >> l2 >> b3 >> l3 >> b4 >> l4) << line;
  EXPECT_EQ(l1, 256 * kMiB);
  EXPECT_LE(b1, 240 * kMiB) << "limit 256 MiB minus the 16 MiB margin";
  EXPECT_GE(b1, 176 * kMiB) << "a fresh process uses far less than 64 MiB";
  EXPECT_GE(resident, 64 * kMiB);
  EXPECT_LE(b2 > b1 ? b2 - b1 : b1 - b2, 16 * kMiB) << "EMP's own resident memory moved the budget: " << line;
  EXPECT_LE(b3, b2 - 32 * kMiB) << "48 MiB of other memory did not lower the budget: " << line;
  EXPECT_GE(b3, b2 - 64 * kMiB) << line;
  EXPECT_EQ(l4, 160 * kMiB);
  EXPECT_LE(b4, 144 * kMiB) << line;
  EXPECT_GE(b4, 96 * kMiB) << line;
}

}  // namespace
}  // namespace emp::control
