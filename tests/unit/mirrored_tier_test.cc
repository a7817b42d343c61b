// MirroredTier (EMP_REPLICAS): every write reaches every live copy, reads fail over to
// another copy, a copy that lost its data is rebuilt from the others, and losing every
// copy is an error, never wrong data.
#include "tier/mirrored_tier.h"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>
#include <vector>

#include "testing/faulty_tier.h"
#include "testing/patterns.h"

namespace emp::testing {
namespace {

using namespace std::chrono_literals;
constexpr uint64_t kCapacity = 8 << 20;
constexpr size_t kBlock = 64 << 10;

struct Mirror {
  FaultyTier* first;
  FaultyTier* second;
  std::unique_ptr<tier::MirroredTier> tier;
};

Mirror make_mirror() {
  auto a = std::make_unique<FaultyTier>(kCapacity);
  auto b = std::make_unique<FaultyTier>(kCapacity);
  Mirror mirror{a.get(), b.get(), nullptr};
  std::vector<std::unique_ptr<tier::Tier>> copies;
  copies.push_back(std::move(a));
  copies.push_back(std::move(b));
  mirror.tier = tier::MirroredTier::create(std::move(copies));
  return mirror;
}

std::vector<uint64_t> block_words(uint64_t version, size_t block) {
  std::vector<uint64_t> words(kBlock / 8);
  for (size_t i = 0; i < words.size(); ++i) words[i] = pattern_word(block * words.size() + i, version);
  return words;
}

void write_blocks(tier::Tier& tier, uint64_t version, size_t count) {
  for (size_t b = 0; b < count; ++b) {
    auto words = block_words(version, b);
    ASSERT_TRUE(tier.write(b * kBlock, words.data(), kBlock).is_ok()) << b;
  }
}

void expect_blocks(tier::Tier& tier, uint64_t version, size_t count) {
  std::vector<uint64_t> back(kBlock / 8);
  for (size_t b = 0; b < count; ++b) {
    Status status = tier.read(b * kBlock, back.data(), kBlock);
    ASSERT_TRUE(status.is_ok()) << "block " << b << ": " << status.to_string();
    ASSERT_EQ(back, block_words(version, b)) << "block " << b;
  }
}

template <typename Condition>
bool wait_for(Condition condition, std::chrono::milliseconds limit = 20s) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

TEST(MirroredTier, CapacityIsTheSmallestCopyAndOneCopyIsRefused) {
  std::vector<std::unique_ptr<tier::Tier>> copies;
  copies.push_back(std::make_unique<FaultyTier>(kCapacity));
  copies.push_back(std::make_unique<FaultyTier>(kCapacity / 2));
  auto tier = tier::MirroredTier::create(std::move(copies));
  EXPECT_EQ(tier->capacity(), kCapacity / 2);
  std::vector<std::unique_ptr<tier::Tier>> one;
  one.push_back(std::make_unique<FaultyTier>(kCapacity));
  EXPECT_THROW(tier::MirroredTier::create(std::move(one)), std::invalid_argument);
}

TEST(MirroredTier, ReadsFailOverWhenACopyFails) {
  Mirror mirror = make_mirror();
  write_blocks(*mirror.tier, 1, 32);
  mirror.first->fail_reads = true;
  expect_blocks(*mirror.tier, 1, 32);
  mirror.first->fail_reads = false;
  mirror.second->fail_reads = true;
  expect_blocks(*mirror.tier, 1, 32);
  EXPECT_EQ(mirror.tier->health(), tier::TierHealth::kHealthy);
}

TEST(MirroredTier, AWriteThatOneCopyRefusesIsKeptOnTheOtherAndRebuilt) {
  Mirror mirror = make_mirror();
  write_blocks(*mirror.tier, 1, 32);
  mirror.second->fail_writes = true;
  write_blocks(*mirror.tier, 2, 16);  // only the first copy holds version 2 of blocks 0..15
  EXPECT_GT(mirror.tier->degraded_bytes(), 0u);
  EXPECT_EQ(mirror.tier->health(), tier::TierHealth::kDegraded);
  mirror.first->fail_reads = true;  // the second copy's version 1 must never be read for them
  std::vector<uint64_t> back(kBlock / 8);
  EXPECT_FALSE(mirror.tier->read(0, back.data(), kBlock).is_ok());
  mirror.first->fail_reads = false;
  mirror.second->fail_writes = false;
  ASSERT_TRUE(wait_for([&] { return mirror.tier->degraded_bytes() == 0; })) << mirror.tier->describe();
  mirror.first->fail_reads = true;  // now the rebuilt second copy serves everything
  expect_blocks(*mirror.tier, 2, 16);
  EXPECT_GE(mirror.tier->rebuilt_bytes(), 16 * kBlock);
}

TEST(MirroredTier, ACopyThatLostItsDataIsRebuiltFromTheOther) {
  Mirror mirror = make_mirror();
  write_blocks(*mirror.tier, 3, 64);
  mirror.second->reported_health = tier::TierHealth::kDegraded;  // reconnecting: not rebuilt yet
  mirror.second->lose_data();
  ASSERT_TRUE(wait_for([&] { return mirror.tier->degraded_bytes() > 0; }));  // the rebuild thread saw the loss
  expect_blocks(*mirror.tier, 3, 64);  // from the first copy
  mirror.second->reported_health = tier::TierHealth::kHealthy;
  ASSERT_TRUE(wait_for([&] { return mirror.tier->degraded_bytes() == 0; })) << mirror.tier->describe();
  mirror.first->fail_reads = true;
  expect_blocks(*mirror.tier, 3, 64);
}

TEST(MirroredTier, LosingEveryCopyIsAnErrorNeverWrongData) {
  Mirror mirror = make_mirror();
  write_blocks(*mirror.tier, 4, 8);
  mirror.first->reported_health = tier::TierHealth::kLost;
  expect_blocks(*mirror.tier, 4, 8);
  mirror.second->reported_health = tier::TierHealth::kLost;
  EXPECT_EQ(mirror.tier->health(), tier::TierHealth::kLost);
  std::vector<uint64_t> back(kBlock / 8);
  Status status = mirror.tier->read(0, back.data(), kBlock);
  EXPECT_EQ(status.code(), EIO) << status.to_string();
  EXPECT_FALSE(mirror.tier->write(0, back.data(), kBlock).is_ok());
}

TEST(MirroredTier, ConcurrentWritesAndRebuildNeverLeaveStaleData) {
  Mirror mirror = make_mirror();
  constexpr size_t kBlocks = 96;
  write_blocks(*mirror.tier, 1, kBlocks);
  mirror.second->reported_health = tier::TierHealth::kDegraded;
  mirror.second->lose_data();
  ASSERT_TRUE(wait_for([&] { return mirror.tier->degraded_bytes() > 0; }));
  mirror.second->reported_health = tier::TierHealth::kHealthy;  // the rebuild starts
  for (uint64_t version = 2; version <= 6; ++version) write_blocks(*mirror.tier, version, kBlocks);
  ASSERT_TRUE(wait_for([&] { return mirror.tier->degraded_bytes() == 0; })) << mirror.tier->describe();
  mirror.first->fail_reads = true;
  expect_blocks(*mirror.tier, 6, kBlocks);
  mirror.first->fail_reads = false;
  mirror.second->fail_reads = true;
  expect_blocks(*mirror.tier, 6, kBlocks);
}

}  // namespace
}  // namespace emp::testing
