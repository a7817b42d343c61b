// Integrity of EMP-managed memory under heavy eviction: real userfaultfd faults, real
// tiers, every byte checked against a pattern.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <random>
#include <thread>

#include "testing/engine_fixture.h"
#include "testing/integrity_workload.h"

namespace emp::testing {
namespace {


struct MatrixCase {
  Access access;
  unsigned threads;
  TierKind tier;
};

class AccessMatrix : public ::testing::TestWithParam<MatrixCase> {};

TEST_P(AccessMatrix, EveryByteSurvivesHeavyEviction) {
  const MatrixCase& c = GetParam();
  TempFiles cleanup;
  EngineSetup setup;
  setup.tier = c.tier;
  setup.fault_threads = std::min(c.threads, 4u);
  setup.budget = 8 << 20;
  EMP_MAKE_ENGINE_OR_SKIP(engine, setup, &cleanup.files);
  const size_t bytes = 40 << 20;
  auto memory = engine->map(bytes);
  ASSERT_TRUE(memory.is_ok()) << memory.status().to_string();
  run_integrity_workload(*memory, bytes, c.threads, c.access, 42);
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
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Engine, AccessMatrix, ::testing::ValuesIn(matrix_cases()),
                         [](const auto& param_info) {
                           return std::string(to_string(param_info.param.access)) + "_" + std::to_string(param_info.param.threads) +
                                  "threads_" + to_string(param_info.param.tier);
                         });

}  // namespace
}  // namespace emp::testing
