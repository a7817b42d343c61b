// FaultLocality: the readahead window a region's faults earn (streams grow it, far
// faults reset it; elastic mode also follows backward runs and decays gradually).
#include <gtest/gtest.h>

#include "core/region.h"

namespace emp::core {
namespace {

TEST(FaultLocality, AForwardStreamDoublesTheWindowUpToTheLimit) {
  FaultLocality locality;
  EXPECT_EQ(locality.next_window(10, false, 16).blocks, 1u);  // nothing known yet
  size_t index = 11;
  uint32_t expected[] = {2, 4, 8, 16, 16};
  for (uint32_t want : expected) {
    FaultLocality::Window window = locality.next_window(index, false, 16);
    EXPECT_EQ(window.blocks, want);
    EXPECT_FALSE(window.backward);
    index += window.blocks;  // the next fault comes after what was read ahead
  }
}

TEST(FaultLocality, AFarFaultResetsTheWindowUnlessElastic) {
  FaultLocality stream, elastic;
  for (size_t i = 0; i < 5; ++i) {
    (void)stream.next_window(i, false, 64);
    (void)elastic.next_window(i, true, 64);
  }
  EXPECT_EQ(stream.next_window(1000, false, 64).blocks, 1u);
  EXPECT_EQ(elastic.next_window(1000, true, 64).blocks, 8u);  // 16, halved
  EXPECT_EQ(elastic.next_window(5000, true, 64).blocks, 4u);
}

TEST(FaultLocality, OnlyElasticFollowsABackwardRun) {
  FaultLocality stream, elastic;
  for (size_t i = 100; i > 90; --i) {
    EXPECT_EQ(stream.next_window(i, false, 64).blocks, 1u);
    (void)elastic.next_window(i, true, 64);
  }
  FaultLocality::Window window = elastic.next_window(89, true, 64);
  EXPECT_GT(window.blocks, 1u);
  EXPECT_TRUE(window.backward);
}

}  // namespace
}  // namespace emp::core
