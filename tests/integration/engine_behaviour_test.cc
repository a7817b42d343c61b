// Engine semantics with real faults: block/subblock sizes, first touch, clean drops,
// run-time budget changes, writes racing evictions, capacity, edges, failures.
#include <gtest/gtest.h>

#include <ostream>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <random>
#include <thread>

#include "os/raw_syscalls.h"
#include "testing/engine_fixture.h"
#include "testing/faulty_tier.h"
#include "testing/integrity_workload.h"
#include "testing/patterns.h"

namespace emp::testing {
namespace {

using namespace std::chrono_literals;
constexpr size_t kPage = 4096;
constexpr size_t kWordsPerPage = kPage / 8;


// ---- every block size with several subblock sizes, CSF on and off ----------------

struct SizeCase {
  uint64_t block, subblock;
  bool csf;
};
// What ctest shows after the test's name (gtest would print the bytes).
void PrintTo(const SizeCase& c, std::ostream* out) {
  *out << "block " << (c.block >> 10) << "K, subblock " << (c.subblock >> 10) << "K, CSF " << (c.csf ? "on" : "off");
}

class BlockSizes : public ::testing::TestWithParam<SizeCase> {};

TEST_P(BlockSizes, RandomRewritesSurviveEviction) {
  const SizeCase& c = GetParam();
  TempFiles files;
  EngineSetup setup;
  setup.block_size = c.block;
  setup.subblock_size = c.subblock;
  setup.csf = c.csf;
  setup.budget = std::max<uint64_t>(4 << 20, 4 * c.block);
  EMP_MAKE_ENGINE_OR_SKIP(engine, setup, &files.files);
  const size_t bytes = std::max<size_t>(16 << 20, 3 * setup.budget);
  auto memory = engine->map(bytes);
  ASSERT_TRUE(memory) << memory.status().to_string();
  run_integrity_workload(*memory, bytes, 2, Access::kRandom, c.block);
  auto stats = engine->stats();
  EXPECT_GT(stats.faults_fetch, 0u);
  EXPECT_LE(stats.peak_resident_bytes, setup.budget + engine->slack());
}

std::vector<SizeCase> size_cases() {
  std::vector<SizeCase> cases;
  bool csf = true;
  for (uint64_t block = 4096; block <= (2 << 20); block *= 2) {
    std::vector<uint64_t> subs = {4096, 16384, 131072, block};
    std::sort(subs.begin(), subs.end());
    subs.erase(std::unique(subs.begin(), subs.end()), subs.end());
    for (uint64_t sub : subs) {
      if (sub > block || sub > (128 << 10)) continue;
      cases.push_back({block, sub, csf});
      csf = !csf;
    }
  }
  cases.push_back({2 << 20, 4096, true});  // 512 subblocks per block
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Engine, BlockSizes, ::testing::ValuesIn(size_cases()), [](const auto& param_info) {
  return "block" + std::to_string(param_info.param.block >> 10) + "K_sub" + std::to_string(param_info.param.subblock >> 10) +
         "K_csf" + (param_info.param.csf ? "on" : "off");
});

// ---- first touch, clean drops -------------------------------------------------------

TEST(Engine, FirstTouchReadsZerosWithoutTierIo) {
  EngineSetup setup;
  setup.budget = 4 << 20;
  EMP_MAKE_ENGINE_OR_SKIP(engine, setup, nullptr);
  const size_t bytes = 32 << 20;
  auto memory = engine->map(bytes);
  ASSERT_TRUE(memory);
  const auto* words = static_cast<const uint64_t*>(*memory);
  for (int pass = 0; pass < 2; ++pass)
    for (size_t w = 0; w < bytes / 8; w += 61) ASSERT_EQ(words[w], 0u) << "word " << w;
  auto stats = engine->stats();
  // Evicted zero blocks come back as zeros (by a fault, or with a readahead window).
  EXPECT_GT(stats.faults_zero + stats.prefetched, bytes / setup.block_size);
  EXPECT_GT(stats.evictions_clean, 0u);
  EXPECT_EQ(stats.bytes_read, 0u);
  EXPECT_EQ(stats.bytes_written, 0u);
  EXPECT_EQ(stats.faults_fetch, 0u);
}

TEST(Engine, CleanBlocksAreDroppedWithoutWriteBack) {
  EngineSetup setup;
  setup.budget = 4 << 20;
  EMP_MAKE_ENGINE_OR_SKIP(engine, setup, nullptr);
  const size_t bytes = 24 << 20;
  auto memory = engine->map(bytes);
  ASSERT_TRUE(memory);
  auto* words = static_cast<uint64_t*>(*memory);
  fill_words(words, 0, bytes / 8, 7);
  // The first read passes write back blocks still dirty from the fill, and blocks that
  // write prediction mapped writable (a block written last time is mapped writable for
  // at most two residencies before it is re-checked with write-protect).
  // Readahead maps blocks clean, which ends their streak too.
  for (int pass = 0; pass < 4; ++pass) ASSERT_EQ(check_words(words, 0, bytes / 8, 7), SIZE_MAX);
  uint64_t written = engine->stats().bytes_written;
  EXPECT_GE(written, bytes - setup.budget - engine->slack());
  for (int pass = 0; pass < 2; ++pass) ASSERT_EQ(check_words(words, 0, bytes / 8, 7), SIZE_MAX);
  auto stats = engine->stats();
  // Blocks still resident and dirty (by prediction) when these passes begin may be
  // written back once; nothing else may: at most what was resident then.
  EXPECT_LE(stats.bytes_written - written, setup.budget + engine->slack())
      << "read-only passes must write back nothing but blocks left dirty before them";
  EXPECT_GT(stats.evictions_clean, 2 * (bytes - setup.budget) / setup.block_size);
  EXPECT_GE(stats.bytes_read, 2 * (bytes - setup.budget));
}

// ---- budget changes while threads run ------------------------------------------------

TEST(Engine, BudgetShrinkAndGrowWhileThreadsRun) {
  EngineSetup setup;
  setup.budget = 48 << 20;
  setup.pool_bytes = 256 << 20;
  EMP_MAKE_ENGINE_OR_SKIP(engine, setup, nullptr);
  const size_t bytes = 64 << 20, pages = bytes / kPage;
  auto memory = engine->map(bytes);
  ASSERT_TRUE(memory);
  auto* words = static_cast<uint64_t*>(*memory);
  std::vector<std::atomic<uint32_t>> version(pages);
  for (size_t p = 0; p < pages; ++p) {
    fill_words(words, p * kWordsPerPage, kWordsPerPage, 0);
    version[p] = 0;
  }
  std::atomic<bool> stop{false};
  std::atomic<bool> failed{false};
  std::vector<std::thread> workers;
  for (unsigned t = 0; t < 2; ++t)
    workers.emplace_back([&, t] {
      std::mt19937_64 rng(t);
      while (!stop && !failed) {
        size_t p = (rng() % (pages / 2)) * 2 + t;  // thread t owns pages of its parity
        uint32_t v = version[p];
        if (check_words(words, p * kWordsPerPage, kWordsPerPage, v) != SIZE_MAX) failed = true;
        fill_words(words, p * kWordsPerPage, kWordsPerPage, v + 1);
        version[p] = v + 1;
      }
    });
  std::this_thread::sleep_for(1500ms);
  uint64_t rss_big = process_rss_bytes();
  uint64_t resident_big = engine->resident();
  EXPECT_GT(resident_big, 24u << 20);
  engine->set_budget(8 << 20);
  bool shrunk = false;
  for (int i = 0; i < 500 && !shrunk; ++i) {
    std::this_thread::sleep_for(10ms);
    shrunk = engine->resident() <= (8u << 20) + engine->slack();
  }
  EXPECT_TRUE(shrunk) << "resident " << engine->resident() << " after shrinking to 8 MiB";
  std::this_thread::sleep_for(300ms);
  EXPECT_LE(engine->resident(), (8u << 20) + engine->slack());
  uint64_t rss_small = process_rss_bytes();
  if (kRssReflectsEmp) {
    EXPECT_LT(rss_small + (16u << 20), rss_big)
        << "memory must go back to the OS (RSS " << rss_big << " -> " << rss_small << ")";
  }
  engine->set_budget(48 << 20);
  bool grew = false;
  for (int i = 0; i < 500 && !grew; ++i) {
    std::this_thread::sleep_for(10ms);
    grew = engine->resident() > (16u << 20);
  }
  EXPECT_TRUE(grew) << "resident " << engine->resident() << " after growing to 48 MiB";
  stop = true;
  for (auto& w : workers) w.join();
  ASSERT_FALSE(failed) << "a thread saw wrong data";
  for (size_t p = 0; p < pages; ++p)
    ASSERT_EQ(check_words(words, p * kWordsPerPage, kWordsPerPage, version[p]), SIZE_MAX) << "page " << p;
}

// ---- writes racing evictions ------------------------------------------------------------

TEST(Engine, WritesRacingEvictionsAreNeverLost) {
  EngineSetup setup;
  setup.block_size = 64 << 10;
  setup.budget = 256 << 10;  // four blocks: constant eviction under the writers
  setup.fault_threads = 2;
  EMP_MAKE_ENGINE_OR_SKIP(engine, setup, nullptr);
  const size_t bytes = 2 << 20, pages = bytes / kPage;
  auto memory = engine->map(bytes);
  ASSERT_TRUE(memory);
  auto* words = static_cast<uint64_t*>(*memory);
  constexpr unsigned kThreads = 4;
  constexpr unsigned kRounds = 40;
  std::vector<std::thread> workers;
  for (unsigned t = 0; t < kThreads; ++t)
    workers.emplace_back([&, t] {
      std::mt19937 rng(t);
      for (unsigned round = 0; round < kRounds; ++round)
        for (size_t i = 0; i < pages; ++i) {
          size_t page = (i * 7 + rng() % 3) % pages;
          words[page * kWordsPerPage + t * 8 + round % 8] += 1;  // every thread writes every page
        }
    });
  for (auto& w : workers) w.join();
  // Each (page, thread, slot) got rounds/8 increments plus the jitter's share; recount exactly.
  std::vector<uint64_t> expected(pages * kThreads * 8, 0);
  for (unsigned t = 0; t < kThreads; ++t) {
    std::mt19937 rng(t);
    for (unsigned round = 0; round < kRounds; ++round)
      for (size_t i = 0; i < pages; ++i) {
        size_t page = (i * 7 + rng() % 3) % pages;
        expected[(page * kThreads + t) * 8 + round % 8] += 1;
      }
  }
  for (size_t page = 0; page < pages; ++page)
    for (unsigned t = 0; t < kThreads; ++t)
      for (unsigned k = 0; k < 8; ++k)
        ASSERT_EQ(words[page * kWordsPerPage + t * 8 + k], expected[(page * kThreads + t) * 8 + k])
            << "page " << page << " thread " << t << " slot " << k;
  auto stats = engine->stats();
  EXPECT_GT(stats.evictions_dirty, 100u);
}

// ---- capacity, edges, release ---------------------------------------------------------------

TEST(Engine, MappingMoreThanThePoolFailsWithEnomem) {
  EngineSetup setup;
  setup.pool_bytes = 64 << 20;
  EMP_MAKE_ENGINE_OR_SKIP(engine, setup, nullptr);
  auto first = engine->map(48 << 20);
  ASSERT_TRUE(first);
  auto second = engine->map(32 << 20);
  ASSERT_FALSE(second);
  EXPECT_EQ(second.status().code(), ENOMEM);
  ASSERT_TRUE(engine->release(*first).is_ok());
  auto third = engine->map(64 << 20);
  EXPECT_TRUE(third) << "released capacity must be reusable";
  EXPECT_EQ(engine->release(reinterpret_cast<char*>(*third) + 4096).code(), EINVAL);
}

TEST(Engine, UnalignedRegionEdgesKeepNeighboursIntact) {
  EngineSetup setup;
  setup.block_size = 64 << 10;
  setup.budget = 1 << 20;
  EMP_MAKE_ENGINE_OR_SKIP(engine, setup, nullptr);
  const size_t outer = (8 << 20) + 3 * (64 << 10);
  void* raw = os::raw_mmap(nullptr, outer, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(raw, MAP_FAILED);
  uintptr_t aligned = (reinterpret_cast<uintptr_t>(raw) + (64 << 10) - 1) & ~uintptr_t((64 << 10) - 1);
  auto* before = reinterpret_cast<uint64_t*>(aligned);            // one page outside, before
  auto* region = reinterpret_cast<uint64_t*>(aligned + 3 * kPage);  // starts 12 KiB into a block
  const size_t length = (4 << 20) + 5 * kPage;                      // ends 20 KiB into a block
  auto* after = reinterpret_cast<uint64_t*>(aligned + 3 * kPage + length);
  before[0] = 0xb3f0b3f0;
  after[0] = 0xaf7e7af7;
  ASSERT_TRUE(engine->adopt(region, length).is_ok());
  for (int pass = 1; pass <= 3; ++pass) {
    fill_words(region, 0, length / 8, static_cast<uint64_t>(pass));
    ASSERT_EQ(check_words(region, 0, length / 8, static_cast<uint64_t>(pass)), SIZE_MAX);
  }
  EXPECT_GT(engine->stats().faults_fetch, 0u);
  EXPECT_EQ(before[0], 0xb3f0b3f0u);
  EXPECT_EQ(after[0], 0xaf7e7af7u);
  ASSERT_TRUE(engine->release(region).is_ok());
  os::raw_munmap(raw, outer);
}

// ---- bad configuration ---------------------------------------------------------------------

TEST(Engine, RejectsBudgetBelowFourBlocks) {
  EngineSetup setup;
  setup.block_size = 2 << 20;
  setup.subblock_size = 128 << 10;
  setup.budget = 4 << 20;
  std::string reason;
  try {
    auto engine = make_engine(setup, &reason, nullptr);
    if (!engine && !reason.empty()) GTEST_SKIP() << reason;
    ADD_FAILURE() << "a 4 MiB budget with 2 MiB blocks was accepted";
  } catch (const std::invalid_argument& error) {
    EXPECT_NE(std::string(error.what()).find("minimum"), std::string::npos) << error.what();
  }
}

TEST(Engine, BadTierPathsGiveClearErrors) {
  struct Case {
    std::string element, expect;
  };
  std::vector<Case> cases = {
      {"/nonexistent-dir/emp.tier:64:0", "cannot open /nonexistent-dir/emp.tier"},
      {"/tmp:64:0", "cannot open /tmp: Is a directory"},
      {"/dev/null:64:0", "neither a regular file nor a block device"},
  };
  for (const char* dev : {"/dev/vda", "/dev/sda", "/dev/nvme0n1"})
    if (int fd = ::open(dev, O_RDONLY); fd >= 0) {
      ::close(fd);
      cases.push_back({std::string(dev) + ":1073741824:0", "less than offset + size"});
      break;
    }
  for (const auto& c : cases) {
    try {
      auto pool = tier::Pool::from_specs(parse_tier_list(c.element));
      ADD_FAILURE() << c.element << " was accepted";
    } catch (const std::exception& error) {
      std::string message = error.what();
      EXPECT_NE(message.find(c.expect), std::string::npos) << message;
      EXPECT_NE(message.find(c.element), std::string::npos) << "message must name the element: " << message;
    }
  }
}

// ---- second-tier failures ------------------------------------------------------------------

std::unique_ptr<core::Engine> engine_on(FaultyTier** faulty, uint64_t budget, core::FatalHandler fatal = {}) {
  auto tier = std::make_unique<FaultyTier>(128 << 20);
  *faulty = tier.get();
  std::vector<std::unique_ptr<tier::Tier>> tiers;
  tiers.push_back(std::move(tier));
  core::EngineConfig config;
  config.budget_bytes = budget;
  config.pool = std::make_unique<tier::Pool>(std::move(tiers));
  config.fatal = std::move(fatal);
  try {
    return core::Engine::create(std::move(config));
  } catch (const std::system_error&) {
    return nullptr;
  }
}

TEST(Engine, FailedWriteBackKeepsDataResident) {
  FaultyTier* faulty = nullptr;
  auto engine = engine_on(&faulty, 4 << 20);
  if (!engine) GTEST_SKIP() << "userfaultfd unavailable";
  const size_t bytes = 16 << 20;
  auto memory = engine->map(bytes);
  ASSERT_TRUE(memory);
  auto* words = static_cast<uint64_t*>(*memory);
  fill_words(words, 0, bytes / 8, 1);
  faulty->fail_writes = true;
  fill_words(words, 0, (2 << 20) / 8, 2);  // dirty blocks that cannot be written back
  faulty->fail_writes = false;
  ASSERT_EQ(check_words(words, 0, (2 << 20) / 8, 2), SIZE_MAX);
  ASSERT_EQ(check_words(words, (2 << 20) / 8, (bytes - (2 << 20)) / 8, 1), SIZE_MAX);
  EXPECT_GT(engine->stats().io_errors, 0u);
}

TEST(EngineDeathTest, UnreadableSecondTierStopsWithAClearMessage) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        FaultyTier* faulty = nullptr;
        auto engine = engine_on(&faulty, 4 << 20);
        if (!engine) std::abort();
        auto memory = engine->map(16 << 20);
        auto* words = static_cast<uint64_t*>(*memory);
        fill_words(words, 0, (16 << 20) / 8, 1);
        faulty->fail_reads = true;
        (void)check_words(words, 0, (16 << 20) / 8, 1);
      },
      "cannot read back memory at 0x[0-9a-f]+ from the second tier \\(faulty-memory\\)");
}

// ---- userfaultfd permission message --------------------------------------------------------

TEST(Userfaultfd, PermissionErrorNamesWhatIsMissing) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to drop to an unprivileged user";
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    if (setgid(65534) != 0 || setuid(65534) != 0) _exit(4);
    try {
      os::Userfaultfd::open();
      _exit(3);  // unprivileged userfaultfd allowed here: nothing to check
    } catch (const std::system_error& error) {
      std::string message = error.what();
      bool ok = message.find("vm.unprivileged_userfaultfd") != std::string::npos &&
                message.find("/dev/userfaultfd") != std::string::npos &&
                message.find("CAP_SYS_PTRACE") != std::string::npos;
      _exit(ok ? 0 : 1);
    }
  }
  int status = 0;
  waitpid(child, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  if (WEXITSTATUS(status) == 3) GTEST_SKIP() << "unprivileged userfaultfd is allowed on this machine";
  EXPECT_EQ(WEXITSTATUS(status), 0) << "message did not name the missing permissions";
}

}  // namespace
}  // namespace emp::testing
