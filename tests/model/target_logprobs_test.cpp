// The fused target log-probability against autograd through log_softmax + gather, in float64.

#include "demix/model/target_logprobs.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace demix::model {
namespace {

TEST(TargetLogprobsTest, ValuesAndGradientsEqualLogSoftmaxGather) {
  torch::manual_seed(0);
  const auto opts = torch::TensorOptions().dtype(torch::kDouble);
  const auto base = torch::randn({37, 50}, opts) * 4;
  const auto targets = torch::randint(0, 50, {37}, torch::kLong);
  const auto upstream = torch::randn({37}, opts);  // any weighting of the rows

  auto ours_in = base.clone().requires_grad_(true);
  const auto ours = target_logprobs(ours_in, targets);
  (ours * upstream).sum().backward();

  auto ref_in = base.clone().requires_grad_(true);
  const auto ref = torch::log_softmax(ref_in, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1);
  (ref * upstream).sum().backward();

  EXPECT_TRUE(torch::allclose(ours, ref, 1e-12, 1e-12));
  EXPECT_TRUE(torch::allclose(ours_in.grad(), ref_in.grad(), 1e-12, 1e-12));
  EXPECT_GT(ref_in.grad().abs().max().item<double>(), 1e-3);  // a gradient worth comparing
}

TEST(TargetLogprobsTest, ChunkedHeadEqualsLogSoftmaxOfTheFullLogits) {
  torch::manual_seed(1);
  const auto opts = torch::TensorOptions().dtype(torch::kDouble);
  const auto hidden = torch::randn({37, 16}, opts), weight = torch::randn({50, 16}, opts);
  const auto logits = torch::matmul(hidden, weight.t());
  auto targets = torch::randint(0, 50, {37}, torch::kLong);
  targets[0] = logits[0].argmax();  // both outcomes of `hits` occur
  targets[1] = (logits[1].argmax() + 1) % 50;
  const auto ref = torch::log_softmax(logits, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1);
  const auto ref_hits = logits.argmax(-1).eq(targets);
  for (int64_t rows : {1, 5, 37, 100}) {  // one row, a ragged last chunk, exact, one big chunk
    at::Tensor hits;
    const auto ours = head_target_logprobs(hidden, weight, targets, rows, &hits);
    EXPECT_EQ(ours.scalar_type(), torch::kFloat) << rows;
    EXPECT_TRUE(torch::allclose(ours.to(torch::kDouble), ref, 1e-5, 1e-5)) << rows;
    EXPECT_TRUE(torch::equal(hits, ref_hits)) << rows;
  }
}

}  // namespace
}  // namespace demix::model
