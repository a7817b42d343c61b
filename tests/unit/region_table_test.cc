// RegionTable: every version is a persistent tree — old snapshots stay intact while the
// table changes — and lookups, positional access, overlap queries and block totals
// match a plain sorted model through thousands of inserts, removals and splits.
#include <gtest/gtest.h>

#include <map>
#include <random>

#include "core/region_table.h"

namespace emp::core {
namespace {

constexpr uint64_t kBlock = 64 << 10;

std::shared_ptr<Region> region_at(uintptr_t base, size_t length) {
  return std::make_shared<Region>(base, length, kBlock, 16 << 10, /*owns_memory=*/false);
}

TEST(RegionTable, OldSnapshotsStayIntactWhileTheTableChanges) {
  RegionTable table;
  table.insert(region_at(0x100000, 0x10000));
  auto before = table.snapshot();
  table.insert(region_at(0x200000, 0x10000));
  ASSERT_TRUE(table.remove(0x100000));
  EXPECT_EQ(before->size(), 1u);
  EXPECT_NE(before->find(0x100000), nullptr);
  EXPECT_EQ(before->find(0x200000), nullptr);
  auto after = table.snapshot();
  EXPECT_EQ(after->size(), 1u);
  EXPECT_EQ(after->find(0x100000), nullptr);
  EXPECT_NE(after->find(0x20ffff), nullptr);
  EXPECT_THROW(table.insert(region_at(0x208000, 0x10000)), std::invalid_argument);
}

TEST(RegionTable, ThousandsOfChangesMatchASortedModel) {
  RegionTable table;
  std::map<uintptr_t, size_t> model;  // base -> length
  std::mt19937_64 rng(11);
  for (int step = 0; step < 20000; ++step) {
    uintptr_t base = 0x10000000 + (rng() % 4096) * 0x10000;
    size_t length = 0x1000 * (1 + rng() % 16);
    auto at = model.upper_bound(base);
    bool overlaps = (at != model.end() && at->first < base + length) ||
                    (at != model.begin() && std::prev(at)->first + std::prev(at)->second > base);
    if (!overlaps && rng() % 3 != 0) {
      table.insert(region_at(base, length));
      model[base] = length;
    } else if (!model.empty()) {
      auto victim = model.lower_bound(base);
      if (victim == model.end()) victim = model.begin();
      if (rng() % 2) {
        ASSERT_TRUE(table.remove(victim->first));
      } else {  // split: keep both ends of the region
        auto old = table.find(victim->first);
        std::vector<std::shared_ptr<Region>> pieces;
        size_t keep = victim->second / 0x1000 / 3;
        if (keep) {
          pieces.push_back(region_at(victim->first, keep * 0x1000));
          pieces.push_back(region_at(victim->first + victim->second - keep * 0x1000, keep * 0x1000));
          table.replace(old, pieces);
          uintptr_t end = victim->first + victim->second;
          model.erase(victim);
          model[pieces[0]->base()] = pieces[0]->length();
          model[end - keep * 0x1000] = keep * 0x1000;
          continue;
        }
        ASSERT_TRUE(table.remove(victim->first));
      }
      model.erase(victim);
    }
  }
  auto snapshot = table.snapshot();
  ASSERT_EQ(snapshot->size(), model.size());
  uint64_t blocks = 0, bytes = 0;
  size_t index = 0;
  for (const auto& region : *snapshot) {
    auto expected = model.find(region->base());
    ASSERT_NE(expected, model.end());
    EXPECT_EQ(region->length(), expected->second);
    EXPECT_EQ((*snapshot)[index++].get(), region.get());
    blocks += region->block_count();
    bytes += region->length();
  }
  EXPECT_EQ(snapshot->block_count(), blocks);
  EXPECT_EQ(table.managed_bytes(), bytes);
  for (const auto& [base, length] : model) {
    EXPECT_EQ(snapshot->find(base + length - 1)->base(), base);
    EXPECT_EQ(table.overlapping(base, base + 1).size(), 1u);
  }
}

}  // namespace
}  // namespace emp::core
