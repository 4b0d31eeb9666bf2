#include "demix/parallel/placement.h"

#include <gtest/gtest.h>

#include <set>

#include "demix/core/error.h"

namespace demix::parallel {
namespace {

TEST(PlacementTest, EveryExpertHostedOnceOrByAnEqualGroup) {
  for (int world : {1, 2, 3, 4, 6, 8, 12, 16}) {
    for (int experts : {1, 2, 3, 4, 6, 8, 16}) {
      const bool even = world >= experts ? world % experts == 0 : experts % world == 0;
      if (!even) {
        EXPECT_THROW(Placement(world, experts), Error) << world << "x" << experts;
        continue;
      }
      const Placement p(world, experts);
      std::vector<int> hosted_count(experts, 0);
      for (int r = 0; r < world; ++r) {
        const auto mine = p.experts_on(r);
        EXPECT_EQ(int(mine.size()), std::max(1, experts / world));
        for (int e : mine) {
          ++hosted_count[e];
          const auto ranks = p.ranks_of(e);
          EXPECT_NE(std::find(ranks.begin(), ranks.end(), r), ranks.end());
          EXPECT_EQ(p.ranks_of(e)[p.replica_of(r, e)], r);
        }
      }
      for (int e = 0; e < experts; ++e) {
        EXPECT_EQ(hosted_count[e], std::max(1, world / experts)) << world << "x" << experts;
        const auto ranks = p.ranks_of(e);
        for (size_t i = 1; i < ranks.size(); ++i) EXPECT_EQ(ranks[i], ranks[i - 1] + 1);
        EXPECT_EQ(p.leader_of(e), ranks.front());
      }
    }
  }
}

TEST(PlacementTest, WorkedExamples) {
  const Placement wide(8, 4);
  EXPECT_EQ(wide.ranks_of(2), (std::vector<int>{4, 5}));
  EXPECT_EQ(wide.experts_on(5), (std::vector<int>{2}));
  EXPECT_EQ(wide.replica_of(5, 2), 1);
  EXPECT_EQ(wide.replica_of(5, 1), -1);
  const Placement narrow(2, 8);
  EXPECT_EQ(narrow.experts_on(1), (std::vector<int>{4, 5, 6, 7}));
  EXPECT_EQ(narrow.ranks_of(6), (std::vector<int>{1}));
  EXPECT_EQ(narrow.replicas(), 1);
  const Placement dense(4, 0);
  EXPECT_TRUE(dense.experts_on(3).empty());
  EXPECT_EQ(dense.replicas(), 4);
}

TEST(PlacementTest, RejectsUnevenGroupsWithAClearMessage) {
  try {
    Placement(6, 4);
    FAIL();
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(),
                 "WORLD_SIZE=6 is not divisible by the 4 experts (data.domains): each "
                 "expert needs an equal group of ranks");
  }
  EXPECT_THROW(Placement(3, 8), Error);
  EXPECT_THROW(Placement(0, 2), Error);
}

}  // namespace
}  // namespace demix::parallel
