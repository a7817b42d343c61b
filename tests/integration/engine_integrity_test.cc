// Integrity of EMP-managed memory under heavy eviction: real userfaultfd faults, real
// tiers, every byte checked against a pattern.
#include <gtest/gtest.h>

#include <ostream>
#include <unistd.h>

#include <cmath>
#include <random>
#include <thread>

#include <atomic>
#include <chrono>
#include <thread>

#include "testing/engine_fixture.h"
#include "testing/integrity_workload.h"

namespace emp::testing {
namespace {



struct MatrixCase {
  Access access;
  unsigned threads;
  TierKind tier;
  uint64_t block_size = 64 << 10;
  bool batched_unmap = true;  // false: the fallback of kernels without process_madvise(PIDFD_SELF)
};
// What ctest shows after the test's name (gtest would print the bytes).
void PrintTo(const MatrixCase& c, std::ostream* out) {
  *out << to_string(c.access) << ", " << c.threads << " threads, " << to_string(c.tier) << ", block "
       << (c.block_size >> 10) << "K" << (c.batched_unmap ? "" : ", unmap fallback");
}

class AccessMatrix : public ::testing::TestWithParam<MatrixCase> {};

TEST_P(AccessMatrix, EveryByteSurvivesHeavyEviction) {
  const MatrixCase& c = GetParam();
  TempFiles cleanup;
  EngineSetup setup;
  setup.tier = c.tier;
  setup.block_size = c.block_size;
  setup.subblock_size = std::min<uint64_t>(setup.subblock_size, c.block_size);
  setup.batched_unmap = c.batched_unmap;
  setup.fault_threads = std::min(c.threads, 4u);
  setup.budget = 8 << 20;
  EMP_MAKE_ENGINE_OR_SKIP(engine, setup, &cleanup.files);
  const size_t bytes = 40 << 20;
  auto memory = engine->map(bytes);
  ASSERT_TRUE(memory.is_ok()) << memory.status().to_string();
  // Sample the process RSS while the workload runs: it may grow by the budget, the
  // documented slack and EMP's own staging buffers, nothing more.
  uint64_t rss_before = process_rss_bytes();
  std::atomic<bool> done{false};
  std::atomic<uint64_t> rss_max{0};
  std::thread sampler([&] {
    while (!done) {
      rss_max = std::max<uint64_t>(rss_max, process_rss_bytes());
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  });
  run_integrity_workload(*memory, bytes, c.threads, c.access, 42);
  done = true;
  sampler.join();
  const uint64_t emp_buffers = (8 << 20) + setup.fault_threads * std::max<uint64_t>(setup.block_size, 64 << 10);
  const uint64_t allowed = setup.budget + engine->slack() + emp_buffers + (2 << 20) /* test bookkeeping */;
  // (Memory tiers hold their data in this process, so only the file tiers are checked.)
  if (kRssReflectsEmp && (c.tier == TierKind::kFile || c.tier == TierKind::kTmpfsFile)) {
    EXPECT_LE(rss_max.load() - std::min(rss_before, rss_max.load()), allowed)
        << "RSS grew from " << rss_before << " to " << rss_max.load();
  }
  auto stats = engine->stats();
  EXPECT_GT(stats.faults_fetch, 0u);
  EXPECT_GT(stats.evictions_dirty, 0u);
  EXPECT_LE(stats.peak_resident_bytes, setup.budget + engine->slack());
  EXPECT_EQ(stats.io_errors, 0u);
  ASSERT_TRUE(engine->release(*memory).is_ok());
}

std::vector<MatrixCase> matrix_cases() {
  std::vector<MatrixCase> cases;
  for (Access a : {Access::kSequential, Access::kRandom, Access::kZipf})
    for (unsigned t : {1u, 2u, 4u})
      for (TierKind k : {TierKind::kMemory, TierKind::kFile, TierKind::kThreeTierPool}) cases.push_back({a, t, k});
  // 4 KiB blocks on a tmpfs file: scattered victims, write-protect runs broken by dirty
  // blocks, I/O in place; and the same with the unmap fallback of older kernels.
  for (Access a : {Access::kRandom, Access::kZipf})
    for (unsigned t : {1u, 4u})
      for (bool batched : {true, false}) cases.push_back({a, t, TierKind::kTmpfsFile, 4 << 10, batched});
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Engine, AccessMatrix, ::testing::ValuesIn(matrix_cases()),
                         [](const auto& param_info) {
                           const MatrixCase& c = param_info.param;
                           return std::string(to_string(c.access)) + "_" + std::to_string(c.threads) + "threads_" +
                                  to_string(c.tier) + (c.block_size != (64 << 10) ? "_4k" : "") +
                                  (c.batched_unmap ? "" : "_unmap_fallback");
                         });

}  // namespace
}  // namespace emp::testing
