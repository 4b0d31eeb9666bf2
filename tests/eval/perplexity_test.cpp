#include "demix/eval/perplexity.h"

#include <gtest/gtest.h>

#include <cmath>

namespace demix::eval {
namespace {

// Bits per byte: the scored text's information in bits over its bytes, in closed form.
TEST(SplitScoreTest, BitsPerByteIsTheScoredBitsOverTheScoredBytes) {
  SplitScore score;
  score.tokens = 4;
  score.nll_sum = 12 * std::log(2.0);  // 12 bits over 4 tokens
  score.bytes = 6;
  EXPECT_DOUBLE_EQ(score.bits_per_byte(), 2.0);
  EXPECT_DOUBLE_EQ(score.loss(), 3 * std::log(2.0));
  score.bytes = 0;  // not counted
  EXPECT_TRUE(std::isnan(score.bits_per_byte()));
}

}  // namespace
}  // namespace demix::eval
