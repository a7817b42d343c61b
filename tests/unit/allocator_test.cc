// BuddyAllocator, Pool capacity accounting, LatencyHistogram and block state bits.
#include <gtest/gtest.h>

#include <random>
#include <set>

#include "common/histogram.h"
#include "core/block.h"
#include "core/frame_budget.h"
#include "core/region.h"
#include "tier/buddy_allocator.h"
#include "tier/memory_tier.h"
#include "tier/pool.h"

namespace emp {
namespace {

TEST(BuddyAllocator, HandsOutAlignedDisjointExtentsAndMergesBack) {
  tier::BuddyAllocator allocator(8 << 20);
  EXPECT_EQ(allocator.free_bytes(), 8u << 20);
  std::mt19937 rng(3);
  std::vector<std::pair<uint64_t, uint64_t>> taken;
  std::set<uint64_t> units;
  for (int i = 0; i < 300; ++i) {
    uint64_t size = 4096ull << (rng() % 6);
    auto offset = allocator.allocate(size);
    if (!offset) break;
    ASSERT_EQ(*offset % size, 0u) << "extent not naturally aligned";
    for (uint64_t u = *offset; u < *offset + size; u += 4096) ASSERT_TRUE(units.insert(u).second) << "overlap";
    taken.emplace_back(*offset, size);
  }
  for (auto [offset, size] : taken) allocator.release(offset, size);
  EXPECT_EQ(allocator.free_bytes(), 8u << 20);
  // Fully merged again: four 2 MiB extents are available.
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(allocator.allocate(2 << 20));
  EXPECT_FALSE(allocator.allocate(4096));
}

TEST(BuddyAllocator, OddCapacityUsesSmallerExtents) {
  tier::BuddyAllocator allocator((2 << 20) + 12288);
  EXPECT_EQ(allocator.free_bytes(), (2u << 20) + 12288);
  EXPECT_TRUE(allocator.allocate(2 << 20));
  EXPECT_TRUE(allocator.allocate(8192));
  EXPECT_TRUE(allocator.allocate(4096));
  EXPECT_FALSE(allocator.allocate(4096));
  EXPECT_EQ(tier::BuddyAllocator::rounded_size(12288), 16384u);
}

TEST(Pool, ReservationFailsWithEnomemAndRoundRobins) {
  std::vector<std::unique_ptr<tier::Tier>> tiers;
  tiers.push_back(tier::MemoryTier::create(4 << 20));
  tiers.push_back(tier::MemoryTier::create(4 << 20));
  tier::Pool pool(std::move(tiers));
  EXPECT_EQ(pool.capacity(), 8u << 20);
  EXPECT_TRUE(pool.reserve(6 << 20).is_ok());
  Status full = pool.reserve(4 << 20);
  EXPECT_EQ(full.code(), ENOMEM);
  pool.unreserve(6 << 20);
  auto a = pool.allocate(64 << 10), b = pool.allocate(64 << 10);
  ASSERT_TRUE(a && b);
  EXPECT_NE(a->tier(), b->tier());
  std::vector<char> out(64 << 10, 'x'), in(64 << 10);
  auto no_failure = [](const tier::FailedBatch&) { ADD_FAILURE(); };
  tier::SlotSpan write{*a, 0, out.data(), out.size()};
  ASSERT_TRUE(pool.write_slots({&write, 1}, no_failure));
  tier::SlotSpan read{*a, 0, in.data(), in.size()};
  ASSERT_TRUE(pool.read_slots({&read, 1}, no_failure));
  EXPECT_EQ(in, out);
}

TEST(Tier, RejectsMisalignedAndOutOfRangeIo) {
  auto t = tier::MemoryTier::create(1 << 20);
  std::vector<char> buffer(8192);
  EXPECT_EQ(t->read(100, buffer.data(), 4096).code(), EINVAL);
  EXPECT_EQ(t->read(0, buffer.data(), 100).code(), EINVAL);
  EXPECT_EQ(t->read(1 << 20, buffer.data(), 4096).code(), ERANGE);
  EXPECT_EQ(t->write((1 << 20) - 4096, buffer.data(), 8192).code(), ERANGE);
  EXPECT_EQ(t->counters().errors, 4u);
  EXPECT_TRUE(t->write(0, buffer.data(), 8192).is_ok());
  EXPECT_EQ(t->counters().bytes_written, 8192u);
}

TEST(Histogram, PercentilesWithinBucketResolution) {
  LatencyHistogram h;
  for (int i = 1; i <= 1000; ++i) h.record(static_cast<uint64_t>(i) * 1000);  // 1..1000 us
  auto s = h.snapshot();
  EXPECT_EQ(s.total(), 1000u);
  double p50 = s.percentile_ns(0.5) / 1e3, p99 = s.percentile_ns(0.99) / 1e3;
  EXPECT_GE(p50, 500);
  EXPECT_LE(p50, 500 * 1.26);
  EXPECT_GE(p99, 990);
  EXPECT_LE(p99, 990 * 1.26);
  EXPECT_EQ(LatencyHistogram().snapshot().percentile_ns(0.5), 0u);
}

TEST(BlockMeta, BusyBitAndHeat) {
  core::BlockMeta block;
  uint32_t word;
  ASSERT_TRUE(block.try_acquire(&word));
  EXPECT_EQ(core::BlockMeta::state_of(word), core::BlockState::kEmpty);
  uint32_t again;
  EXPECT_FALSE(block.try_acquire(&again));
  block.release(core::BlockMeta::with_heat(core::BlockMeta::to_prefetched(core::BlockMeta::to_empty(), false), 2));
  EXPECT_FALSE(block.cool());  // heat 2 -> 1
  EXPECT_FALSE(block.cool());  // 1 -> 0
  EXPECT_TRUE(block.cool());   // cold: a candidate
  block.warm();
  EXPECT_EQ(core::BlockMeta::heat_of(block.load()), 1u);
  ASSERT_TRUE(block.try_acquire(&word));
  EXPECT_FALSE(block.cool());  // busy blocks are never candidates
  block.release(word);
}

TEST(Region, UnalignedEdgesUseSmallerBlocks) {
  const uint64_t block = 64 << 10;
  uintptr_t base = 0x10000000 + 12288;          // 12 KiB into a block
  size_t length = 3 * block + 8192;              // ends 8 KiB + 12 KiB into another
  core::Region region(base, length, block, 16 << 10, false);
  ASSERT_EQ(region.block_count(), 4u);
  EXPECT_EQ(region.block_range(0).start, base);
  EXPECT_EQ(region.block_range(0).length, block - 12288);
  EXPECT_EQ(region.block_range(1).length, block);
  EXPECT_EQ(region.block_range(3).length, 20480u);
  EXPECT_EQ(region.block_range(3).start + region.block_range(3).length, base + length);
  size_t total = 0;
  for (size_t i = 0; i < region.block_count(); ++i) total += region.block_range(i).length;
  EXPECT_EQ(total, length);
  EXPECT_EQ(region.block_index(base), 0u);
  EXPECT_EQ(region.block_index(base + length - 1), 3u);
  EXPECT_EQ(region.slot_bytes(3), 32768u);
  EXPECT_LE(region.metadata_bytes(), 4096u);
}

TEST(FrameBudget, ChargesWithinBudgetAndSlack) {
  core::FrameBudget budget(1 << 20, 64 << 10);
  EXPECT_TRUE(budget.try_charge(1 << 20));
  EXPECT_FALSE(budget.try_charge(4096));
  EXPECT_TRUE(budget.try_charge_with_slack(64 << 10));
  EXPECT_FALSE(budget.try_charge_with_slack(4096));
  budget.uncharge(128 << 10);
  EXPECT_EQ(budget.peak(), (1u << 20) + (64u << 10));
  EXPECT_LT(budget.low_watermark(4096), budget.high_watermark(4096));
  EXPECT_LT(budget.high_watermark(4096), budget.budget());
}

}  // namespace
}  // namespace emp
