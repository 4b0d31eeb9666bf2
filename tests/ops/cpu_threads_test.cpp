// How many intra-op threads a process takes: train.threads, else its share of the cores.

#include <gtest/gtest.h>

#include "demix/ops/execution_policy.h"

namespace demix::ops {
namespace {

TEST(CpuThreadsTest, ExplicitSettingWins) {
  EXPECT_EQ(resolve_threads(3, 16, 4), 3);
  EXPECT_EQ(resolve_threads(8, 2, 2), 8);  // more than the cores: the user's choice
}

TEST(CpuThreadsTest, CoresAreSplitAmongLocalRanks) {
  EXPECT_EQ(resolve_threads(0, 16, 1), 16);
  EXPECT_EQ(resolve_threads(0, 16, 4), 4);
  EXPECT_EQ(resolve_threads(0, 2, 2), 1);
  EXPECT_EQ(resolve_threads(0, 7, 2), 3);  // rounded down: never more threads than cores
}

TEST(CpuThreadsTest, EveryRankGetsAtLeastOneThread) {
  EXPECT_EQ(resolve_threads(0, 2, 4), 1);
  EXPECT_EQ(resolve_threads(0, 0, 3), 1);
}

}  // namespace
}  // namespace demix::ops
