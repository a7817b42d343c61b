// dram:auto decisions over fake /proc and cgroup trees: what is read (v1, v2, hybrid,
// nested limits, missing files) and how the budget moves (ceiling, pressure, growth,
// bounds, manual override).
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include "control/dram_auto.h"

namespace emp::control {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
constexpr uint64_t kMiB = 1ULL << 20;
constexpr uint64_t kGiB = 1ULL << 30;

class FakeHost {
 public:
  FakeHost() {
    char name[] = "/tmp/emp-dram-auto-XXXXXX";
    root_ = ::mkdtemp(name);
    fs::create_directories(proc() + "/self");
    fs::create_directories(proc() + "/pressure");
    fs::create_directories(cgroup());
  }
  ~FakeHost() { fs::remove_all(root_); }
  std::string proc() const { return root_ + "/proc"; }
  std::string cgroup() const { return root_ + "/cgroup"; }

  void write(const std::string& path, const std::string& text) const {
    fs::create_directories(fs::path(path).parent_path());
    std::ofstream(path) << text;
  }
  void meminfo(uint64_t total, uint64_t available) const {
    write(proc() + "/meminfo", "MemTotal:       " + std::to_string(total / 1024) + " kB\nMemFree:  1 kB\nMemAvailable:   " +
                                   std::to_string(available / 1024) + " kB\n");
  }
  void psi(double avg10) const {
    write(proc() + "/pressure/memory", "some avg10=" + std::to_string(avg10) + " avg60=0.00 avg300=0.00 total=1\n"
                                       "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n");
  }
  void v1(const std::string& path, uint64_t limit, uint64_t usage, uint64_t inactive = 0) const {
    std::string dir = cgroup() + "/memory" + path;
    write(dir + "/memory.limit_in_bytes", std::to_string(limit) + "\n");
    write(dir + "/memory.usage_in_bytes", std::to_string(usage) + "\n");
    write(dir + "/memory.stat", "cache 0\nrss 0\ninactive_file 1\ntotal_inactive_file " + std::to_string(inactive) + "\n");
  }
  void v2(const std::string& base, const std::string& path, const std::string& max, uint64_t current,
          uint64_t inactive = 0) const {
    std::string dir = base + path;
    write(base + "/cgroup.controllers", "cpu memory\n");
    write(dir + "/memory.max", max + "\n");
    write(dir + "/memory.current", std::to_string(current) + "\n");
    write(dir + "/memory.stat", "anon 0\ninactive_file " + std::to_string(inactive) + "\n");
  }

 private:
  std::string root_;
};

constexpr uint64_t kUnlimitedV1 = 9223372036854771712ULL;

TEST(MemorySignals, ReadsCgroupV1MeminfoAndPsi) {
  FakeHost host;
  host.write(host.proc() + "/self/cgroup", "9:pids:/\n4:memory:/app\n0::/\n");
  host.v1("", kUnlimitedV1, 3 * kGiB);
  host.v1("/app", 512 * kMiB, 300 * kMiB, 100 * kMiB);
  host.meminfo(8 * kGiB, 4 * kGiB);
  host.psi(1.5);
  MemorySignals s = read_memory_signals(host.proc(), host.cgroup());
  ASSERT_TRUE(s.cgroup_limit);
  EXPECT_EQ(*s.cgroup_limit, 512 * kMiB);
  EXPECT_EQ(s.cgroup_headroom, 312 * kMiB);  // inactive file cache counts as free
  EXPECT_EQ(s.cgroup_dir, host.cgroup() + "/memory/app");
  EXPECT_EQ(s.mem_total, 8 * kGiB);
  EXPECT_EQ(s.mem_available, 4 * kGiB);
  ASSERT_TRUE(s.psi_some_avg10);
  EXPECT_NEAR(*s.psi_some_avg10, 1.5, 1e-6);
}

TEST(MemorySignals, CgroupV2TakesTheTightestLevelOnThePath) {
  FakeHost host;
  host.write(host.proc() + "/self/cgroup", "0::/user.slice/app\n");
  host.v2(host.cgroup(), "/user.slice/app", std::to_string(kGiB), 600 * kMiB);
  host.v2(host.cgroup(), "/user.slice", std::to_string(800 * kMiB), 700 * kMiB);
  host.v2(host.cgroup(), "", "max", 2 * kGiB);
  MemorySignals s = read_memory_signals(host.proc(), host.cgroup());
  ASSERT_TRUE(s.cgroup_limit);
  EXPECT_EQ(*s.cgroup_limit, 800 * kMiB);
  EXPECT_EQ(s.cgroup_headroom, 100 * kMiB);
  EXPECT_EQ(s.cgroup_dir, host.cgroup() + "/user.slice");
}

TEST(MemorySignals, HybridHierarchyAndUnlimitedV2) {
  FakeHost host;
  host.write(host.proc() + "/self/cgroup", "0::/svc\n");
  host.v2(host.cgroup() + "/unified", "/svc", "max", 100 * kMiB);
  MemorySignals s = read_memory_signals(host.proc(), host.cgroup());
  EXPECT_FALSE(s.cgroup_limit);
  host.v2(host.cgroup() + "/unified", "/svc", std::to_string(256 * kMiB), 100 * kMiB);
  s = read_memory_signals(host.proc(), host.cgroup());
  ASSERT_TRUE(s.cgroup_limit);
  EXPECT_EQ(s.cgroup_headroom, 156 * kMiB);
}

TEST(MemorySignals, NamespacedCgroupFallsBackToTheMountRoot) {
  FakeHost host;
  host.write(host.proc() + "/self/cgroup", "4:memory:/docker/abc\n");
  host.v1("", 256 * kMiB, 56 * kMiB);
  MemorySignals s = read_memory_signals(host.proc(), host.cgroup());
  ASSERT_TRUE(s.cgroup_limit);
  EXPECT_EQ(s.cgroup_headroom, 200 * kMiB);
}

TEST(MemorySignals, MissingOrGarbageFilesLeaveFieldsEmpty) {
  FakeHost host;
  MemorySignals s = read_memory_signals(host.proc(), host.cgroup());
  EXPECT_FALSE(s.cgroup_limit);
  EXPECT_FALSE(s.mem_total);
  EXPECT_FALSE(s.psi_some_avg10);
  host.write(host.proc() + "/self/cgroup", "garbage\n::\n4:memory\n");
  host.write(host.proc() + "/meminfo", "MemTotal: lots\n");
  host.write(host.proc() + "/pressure/memory", "some avg10=x\n");
  s = read_memory_signals(host.proc(), host.cgroup());
  EXPECT_FALSE(s.cgroup_limit);
  EXPECT_FALSE(s.mem_total);
  EXPECT_FALSE(s.psi_some_avg10);
  EXPECT_FALSE(read_memory_signals("/nonexistent", "/nonexistent").cgroup_limit);
}

// ---- policy --------------------------------------------------------------------------

constexpr uint64_t kBlock = 64 << 10;
const auto kNow = std::chrono::steady_clock::time_point() + std::chrono::hours(1);

MemorySignals cgroup_signals(uint64_t limit, uint64_t headroom) {
  MemorySignals s;
  s.cgroup_limit = limit;
  s.cgroup_headroom = headroom;
  s.mem_total = 64 * kGiB;
  s.mem_available = 60 * kGiB;
  s.psi_some_avg10 = 0.0;
  return s;
}

TEST(DramAutoPolicy, FirstStepJumpsToTheCgroupCeiling) {
  DramAutoConfig config;
  DramAutoPolicy policy(config, kBlock, 16 * kGiB);
  // limit 1 GiB, 400 MiB used by the rest of the process, nothing resident: 624 MiB - 64 MiB margin.
  auto d = policy.decide(cgroup_signals(kGiB, 624 * kMiB), 16 * kMiB, 0, true, kNow);
  EXPECT_EQ(d.budget, 560 * kMiB);
  EXPECT_EQ(d.ceiling, 560 * kMiB);
  EXPECT_NE(d.reason.find("cgroup"), std::string::npos);
  // Resident EMP memory is part of the cgroup's usage but not "other" usage: same ceiling.
  d = policy.decide(cgroup_signals(kGiB, 324 * kMiB), 560 * kMiB, 300 * kMiB, false, kNow);
  EXPECT_EQ(d.ceiling, 560 * kMiB);
}

TEST(DramAutoPolicy, ShrinksAtOnceWhenTheLimitDrops) {
  DramAutoPolicy policy(DramAutoConfig{}, kBlock, 16 * kGiB);
  auto d = policy.decide(cgroup_signals(512 * kMiB, 100 * kMiB), 560 * kMiB, 300 * kMiB, false, kNow);
  EXPECT_EQ(d.budget, 400 * kMiB - 32 * kMiB);  // 300 + 100 - margin(512M/16)
  EXPECT_NE(d.reason.find("shrink"), std::string::npos);
}

TEST(DramAutoPolicy, GrowsSlowlyWhenCalm) {
  DramAutoPolicy policy(DramAutoConfig{}, kBlock, 16 * kGiB);
  MemorySignals s = cgroup_signals(4 * kGiB, 4 * kGiB);
  uint64_t budget = 256 * kMiB;
  auto d = policy.decide(s, budget, 100 * kMiB, false, kNow);
  EXPECT_EQ(d.budget, budget + 16 * kMiB);  // max(budget/16, 16 MiB)
  EXPECT_EQ(d.reason, "calm: growing");
  int steps = 0;
  while (d.budget < d.ceiling && steps < 1000) {
    d = policy.decide(s, d.budget, 100 * kMiB, false, kNow);
    ++steps;
  }
  EXPECT_GT(steps, 10);
  EXPECT_EQ(d.budget, d.ceiling);
  EXPECT_NE(d.reason.find("at the"), std::string::npos);
}

TEST(DramAutoPolicy, PressureShrinksByAnEighthWithACooldownAndModeratePressureHolds) {
  DramAutoPolicy policy(DramAutoConfig{}, kBlock, 16 * kGiB);
  MemorySignals s = cgroup_signals(4 * kGiB, 4 * kGiB);
  s.psi_some_avg10 = 25.0;
  auto d = policy.decide(s, 1024 * kMiB, 500 * kMiB, false, kNow);
  EXPECT_EQ(d.budget, 896 * kMiB);
  EXPECT_NE(d.reason.find("pressure"), std::string::npos);
  d = policy.decide(s, 896 * kMiB, 500 * kMiB, false, kNow + 500ms);
  EXPECT_EQ(d.budget, 896 * kMiB) << "second shrink inside the cooldown";
  d = policy.decide(s, 896 * kMiB, 500 * kMiB, false, kNow + 2500ms);
  EXPECT_EQ(d.budget, 784 * kMiB);
  s.psi_some_avg10 = 5.0;
  d = policy.decide(s, 784 * kMiB, 500 * kMiB, false, kNow + 10s);
  EXPECT_EQ(d.budget, 784 * kMiB);
  EXPECT_NE(d.reason.find("holding"), std::string::npos);
}

TEST(DramAutoPolicy, LowMemAvailableCapsTheBudget) {
  DramAutoPolicy policy(DramAutoConfig{}, kBlock, 16 * kGiB);
  MemorySignals s;
  s.mem_total = 8 * kGiB;
  s.mem_available = 500 * kMiB;  // reserve: 8G/20 = 409.6 MiB
  auto d = policy.decide(s, 2 * kGiB, 1 * kGiB, false, kNow);
  uint64_t expected = (kGiB + 500 * kMiB - DramAutoPolicy::host_reserve(8 * kGiB)) / kBlock * kBlock;
  EXPECT_EQ(d.budget, expected);
  EXPECT_NE(d.reason.find("MemAvailable"), std::string::npos);
}

TEST(DramAutoPolicy, StaysWithinMinAndMax) {
  DramAutoConfig config;
  DramAutoPolicy policy(config, kBlock, 128 * kMiB);
  EXPECT_EQ(policy.min_budget(), 4 * kBlock);
  // A limit already exhausted by other usage: the minimum, never zero.
  auto d = policy.decide(cgroup_signals(256 * kMiB, 0), 64 * kMiB, 0, false, kNow);
  EXPECT_EQ(d.budget, 4 * kBlock);
  // Plenty of room: the pool capacity caps it.
  d = policy.decide(cgroup_signals(64 * kGiB, 60 * kGiB), 0, 0, true, kNow);
  EXPECT_EQ(d.budget, 128 * kMiB);
  config.max_bytes = 100 * kMiB + 123;
  config.min_bytes = 10 * kMiB;
  DramAutoPolicy bounded(config, kBlock, 128 * kMiB);
  EXPECT_EQ(bounded.decide(cgroup_signals(64 * kGiB, 60 * kGiB), 0, 0, true, kNow).budget, 100 * kMiB);
  EXPECT_EQ(bounded.decide(cgroup_signals(256 * kMiB, 0), 64 * kMiB, 0, false, kNow).budget, 10 * kMiB);
  // Nothing known at all: hold.
  DramAutoPolicy blind(DramAutoConfig{}, kBlock, 0);
  EXPECT_EQ(blind.decide(MemorySignals{}, 32 * kMiB, 0, false, kNow).budget, 32 * kMiB);
}

// ---- controller ------------------------------------------------------------------------

struct FakeEngine {
  std::atomic<uint64_t> budget{16 * kMiB};
  std::atomic<uint64_t> resident{0};
  std::atomic<int> sets{0};
  BudgetTarget target(uint64_t pool) {
    BudgetTarget t;
    t.budget = [this] { return budget.load(); };
    t.resident = [this] { return resident.load(); };
    t.set_budget = [this](uint64_t b) {
      budget = b;
      ++sets;
    };
    t.block_size = kBlock;
    t.pool_capacity = pool;
    return t;
  }
};

TEST(DramAutoController, StepsFollowTheFakeCgroupAndManualOverrideSwitchesItOff) {
  FakeHost host;
  host.write(host.proc() + "/self/cgroup", "4:memory:/app\n");
  host.v1("/app", 512 * kMiB, 112 * kMiB);
  host.meminfo(64 * kGiB, 60 * kGiB);
  host.psi(0);
  FakeEngine engine;
  DramAutoConfig config;
  config.proc_root = host.proc();
  config.cgroup_root = host.cgroup();
  config.start_thread = false;
  auto controller = DramAutoController::start(engine.target(8 * kGiB), config);
  controller->step();
  EXPECT_EQ(engine.budget.load(), 400 * kMiB - 32 * kMiB);
  host.v1("/app", 256 * kMiB, 112 * kMiB);
  controller->step();
  EXPECT_EQ(engine.budget.load(), 144 * kMiB - 16 * kMiB);

  controller->override_budget(300 * kMiB, "manual");
  EXPECT_FALSE(controller->enabled());
  EXPECT_EQ(engine.budget.load(), 300 * kMiB);
  controller->step();
  EXPECT_EQ(engine.budget.load(), 300 * kMiB) << "a disabled controller must not touch the budget";
  EXPECT_EQ(controller->state().note, "manual");
  controller->set_enabled(true, "back on");
  controller->step();
  EXPECT_EQ(engine.budget.load(), 128 * kMiB);
  std::string json = controller->state_json();
  EXPECT_NE(json.find("\"cgroup_limit_bytes\":268435456"), std::string::npos) << json;
}

TEST(DramAutoController, ThreadAppliesChangesWithinAFewIntervals) {
  FakeHost host;
  host.write(host.proc() + "/self/cgroup", "0::/app\n");
  host.v2(host.cgroup(), "/app", std::to_string(kGiB), 0);
  FakeEngine engine;
  DramAutoConfig config;
  config.proc_root = host.proc();
  config.cgroup_root = host.cgroup();
  config.interval = 20ms;
  auto controller = DramAutoController::start(engine.target(8 * kGiB), config);
  auto wait_for = [&](uint64_t expected) {
    for (int i = 0; i < 200 && engine.budget.load() != expected; ++i) std::this_thread::sleep_for(10ms);
    return engine.budget.load();
  };
  EXPECT_EQ(wait_for(kGiB - 64 * kMiB), kGiB - 64 * kMiB);
  host.v2(host.cgroup(), "/app", std::to_string(512 * kMiB), 0);
  EXPECT_EQ(wait_for(512 * kMiB - 32 * kMiB), 512 * kMiB - 32 * kMiB);
  controller.reset();  // joins the thread
  int sets = engine.sets.load();
  std::this_thread::sleep_for(60ms);
  EXPECT_EQ(engine.sets.load(), sets);
}

TEST(DramAutoController, InitialBudgetUsesTheSameRules) {
  FakeHost host;
  host.write(host.proc() + "/self/cgroup", "4:memory:/\n");
  host.v1("", 2 * kGiB, 0);
  DramAutoConfig config;
  config.proc_root = host.proc();
  config.cgroup_root = host.cgroup();
  EXPECT_EQ(DramAutoController::initial_budget(config, kBlock, 8 * kGiB), 2 * kGiB - 128 * kMiB);
}

}  // namespace
}  // namespace emp::control
