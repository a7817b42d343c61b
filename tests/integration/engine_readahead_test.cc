// Readahead on real faults: a sequential sweep over evicted memory brings the following
// blocks in with each fault (fewer fetch faults, same data), random access does not, and
// elastic mode also follows a backward sweep. Data is checked word by word throughout.
#include <gtest/gtest.h>

#include <random>

#include "testing/engine_fixture.h"
#include "testing/patterns.h"

namespace emp::testing {
namespace {

constexpr size_t kMiB = 1 << 20;
constexpr size_t kBytes = 32 * kMiB;
constexpr size_t kBlock = 64 << 10;

struct Sweep {
  uint64_t fetches = 0, prefetched = 0;
};

enum class Order { kForward, kBackward, kRandom };

// Writes the pattern, evicts most of it, then reads every block once in `order`.
Sweep sweep(bool prefetch, bool elastic, Order order) {
  EngineSetup setup;
  setup.tier = TierKind::kMemory;
  setup.budget = 4 * kMiB;
  setup.block_size = kBlock;
  setup.prefetch = prefetch;
  setup.elastic = elastic;
  TempFiles files;
  std::string skip;
  auto engine = make_engine(setup, &skip, &files.files);
  if (!engine) return {};
  auto mapped = engine->map(kBytes);
  EXPECT_TRUE(mapped);
  auto* words = static_cast<uint64_t*>(*mapped);
  fill_words(words, 0, kBytes / 8, 5);
  core::EngineStats before = engine->stats();
  std::vector<size_t> blocks(kBytes / kBlock);
  for (size_t i = 0; i < blocks.size(); ++i) blocks[i] = order == Order::kBackward ? blocks.size() - 1 - i : i;
  if (order == Order::kRandom) std::shuffle(blocks.begin(), blocks.end(), std::mt19937_64(3));
  for (size_t block : blocks)
    EXPECT_EQ(check_words(words, block * kBlock / 8, kBlock / 8, 5), SIZE_MAX) << "block " << block;
  core::EngineStats after = engine->stats();
  EXPECT_TRUE(engine->release(*mapped));
  return Sweep{after.faults_fetch - before.faults_fetch, after.prefetched - before.prefetched};
}

// Skips every test when userfaultfd is not available here.
class EngineReadahead : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string skip;
    TempFiles files;
    if (!make_engine(EngineSetup{}, &skip, &files.files)) GTEST_SKIP() << skip;
  }
};

TEST_F(EngineReadahead, ASequentialSweepFetchesAheadAndReadsTheSameData) {
  Sweep off = sweep(false, false, Order::kForward);
  Sweep on = sweep(true, false, Order::kForward);
  EXPECT_EQ(off.prefetched, 0u);
  EXPECT_GT(on.prefetched, off.fetches / 2);
  EXPECT_LT(on.fetches, off.fetches / 2) << "readahead should turn most fetch faults into prefetched blocks";
}

TEST_F(EngineReadahead, RandomAccessBarelyPrefetches) {
  Sweep random = sweep(true, true, Order::kRandom);
  EXPECT_LT(random.prefetched, random.fetches / 10);
}

TEST_F(EngineReadahead, ElasticFollowsABackwardSweep) {
  Sweep stream = sweep(true, false, Order::kBackward);
  Sweep elastic = sweep(true, true, Order::kBackward);
  // Only a readahead the writing phase still had in flight, at most a window per thread.
  EXPECT_LT(stream.prefetched * 4, elastic.prefetched);
  EXPECT_GT(elastic.prefetched, elastic.fetches);
}

}  // namespace
}  // namespace emp::testing
