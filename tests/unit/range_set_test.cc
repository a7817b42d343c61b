// RangeSet (libemp.so's MADV_WIPEONFORK ranges): merging, splitting removal and
// containment, checked against a page-by-page model on random operations.
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "common/range_set.h"

namespace emp {
namespace {

TEST(RangeSet, MergesTouchingRangesAndSplitsOnRemoval) {
  RangeSet set;
  set.add(0x1000, 0x3000);
  set.add(0x3000, 0x5000);
  EXPECT_EQ(set.size(), 1u);
  EXPECT_TRUE(set.contains(0x1000, 0x5000));
  set.remove(0x2000, 0x3000);
  EXPECT_EQ(set.size(), 2u);
  EXPECT_FALSE(set.contains(0x1000, 0x5000));
  EXPECT_TRUE(set.contains(0x3000, 0x5000));
  set.remove(0, 0x10000);
  EXPECT_TRUE(set.empty());
}

TEST(RangeSet, ThousandsOfRangesMatchAPageModel) {
  constexpr size_t kPages = 4096;
  std::vector<bool> model(kPages, false);
  RangeSet set;
  std::mt19937 rng(5);
  for (int i = 0; i < 20000; ++i) {
    size_t first = rng() % kPages, count = 1 + rng() % 8;
    size_t last = std::min(kPages, first + count);
    bool add = rng() % 3 != 0;
    if (add) set.add(first * 4096, last * 4096);
    else set.remove(first * 4096, last * 4096);
    for (size_t p = first; p < last; ++p) model[p] = add;
  }
  for (size_t p = 0; p < kPages; ++p) EXPECT_EQ(set.contains(p * 4096, (p + 1) * 4096), model[p]) << p;
  size_t pages = 0;
  uintptr_t previous_end = 0;
  bool first = true;
  set.for_each([&](uintptr_t start, uintptr_t end) {
    if (!first) {
      EXPECT_GT(start, previous_end) << "ranges must not touch or overlap";
    }
    first = false;
    previous_end = end;
    pages += (end - start) / 4096;
  });
  EXPECT_EQ(pages, static_cast<size_t>(std::count(model.begin(), model.end(), true)));
}

}  // namespace
}  // namespace emp
