// The fused target log-probability against autograd through log_softmax + gather: in float64
// (ATen's path), and the CPU fp32 and CUDA kernels against that float64 reference.

#include "demix/ops/target_logprobs.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <limits>
#include <utility>
#include <vector>

#include "support/tensor_compare.h"

namespace demix::ops {
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

// log_softmax(x)[t] and its gradient under `upstream`, by autograd in float64.
std::pair<at::Tensor, at::Tensor> float64_reference(const at::Tensor& logits,
                                                    const at::Tensor& targets,
                                                    const at::Tensor& upstream) {
  auto x = logits.detach().to(torch::kDouble).requires_grad_(true);
  const auto out = torch::log_softmax(x, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1);
  (out * upstream.to(torch::kDouble)).sum().backward();
  return {out.detach(), x.grad()};
}

TEST(TargetLogprobsTest, Fp32CpuKernelMatchesFloat64) {
  torch::manual_seed(2);
  // Widths below one vector, with a ragged tail, and the configs' vocabulary plus a tail; rows at
  // a large offset (the max subtraction) and a wide spread (terms far below e^-87 vanish).
  for (int64_t V : {5, 50, 8195}) {
    auto base = torch::randn({37, V}) * 4;
    base[3] += 500;
    base[4] *= 30;
    const auto targets = torch::randint(0, V, {37}, torch::kLong);
    const auto upstream = torch::randn({37});
    auto leaf = base.clone().requires_grad_(true);
    const auto logits = leaf * 1.0f;  // an intermediate, as a model's logits are
    const auto ours = target_logprobs(logits, targets);
    (ours * upstream).sum().backward();
    const auto [ref, ref_grad] = float64_reference(base, targets, upstream);
    // ATen's own fp32 log_softmax is off by up to 6e-8 (values) and 4.7e-7 (gradients) here.
    EXPECT_LT(test_support::relative_difference(ours.to(torch::kDouble), ref), 2e-7) << V;
    EXPECT_LT(test_support::relative_difference(leaf.grad().to(torch::kDouble), ref_grad), 1e-6)
        << V;
  }
}

TEST(TargetLogprobsTest, Fp32CpuKernelKeepsALeafsValues) {
  torch::manual_seed(3);
  const auto base = torch::randn({8, 50});
  auto leaf = base.clone().requires_grad_(true);
  target_logprobs(leaf, torch::zeros({8}, torch::kLong)).sum().backward();
  EXPECT_TRUE(torch::equal(leaf.detach(), base));
  EXPECT_GT(leaf.grad().abs().max().item<double>(), 1e-3);
}

// Rows holding NaN, +inf, one -inf and only -inf on `device` (fp32) give log_softmax's values
// and gradients, NaN included.
void expect_atens_results_on_non_finite_rows(const torch::Device& device) {
  torch::manual_seed(4);
  const float inf = std::numeric_limits<float>::infinity();
  auto base = torch::randn({6, 40});
  base[0][7] = std::numeric_limits<float>::quiet_NaN();
  base[1][39] = inf;  // in the scalar tail of the row
  base[2][0] = -inf;
  base[3].fill_(-inf);
  const auto targets = torch::tensor({7, 3, 5, 1, 9, 2}, torch::kLong);  // row 2: finite target
  const auto upstream = torch::randn({6});

  auto ours_leaf = base.clone().to(device).requires_grad_(true);
  (target_logprobs(ours_leaf * 1.0f, targets.to(device)) * upstream.to(device)).sum().backward();
  auto ref_leaf = base.clone().requires_grad_(true);
  const auto ref = torch::log_softmax(ref_leaf, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1);
  (ref * upstream).sum().backward();

  const auto ours_values = target_logprobs(base.to(device), targets.to(device)).cpu();
  EXPECT_TRUE(torch::allclose(ours_values, ref.detach(), 1e-6, 1e-6, /*equal_nan=*/true));
  EXPECT_TRUE(
      torch::allclose(ours_leaf.grad().cpu(), ref_leaf.grad(), 1e-6, 1e-6, /*equal_nan=*/true));
  EXPECT_TRUE(std::isfinite(ours_values[2].item<float>()));  // only the -inf entry is -inf
  EXPECT_TRUE(std::isnan(ours_values[0].item<float>()));
}

TEST(TargetLogprobsTest, Fp32CpuKernelGivesAtensResultsOnNonFiniteRows) {
  expect_atens_results_on_non_finite_rows(torch::kCPU);
}

TEST(TargetLogprobsTest, Fp32CpuKernelRejectsTargetsOutOfRange) {
  const auto logits = torch::randn({2, 10});
  EXPECT_THROW(target_logprobs(logits, torch::tensor({0, 10}, torch::kLong)), c10::Error);
  EXPECT_THROW(target_logprobs(logits, torch::tensor({-1, 0}, torch::kLong)), c10::Error);
}

TEST(TargetLogprobsTest, Fp32CpuKernelRefusesASecondBackward) {
  auto leaf = torch::randn({4, 20}).requires_grad_(true);
  const auto loss = target_logprobs(leaf * 2.0f, torch::zeros({4}, torch::kLong)).sum();
  loss.backward({}, /*retain_graph=*/true);
  EXPECT_THROW(loss.backward(), c10::Error);  // the saved logits now hold their gradient
}

TEST(TargetLogprobsTest, CudaKernelMatchesFloat64InEachLogitType) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  torch::manual_seed(5);
  // The gradient is written in the logits' type: bf16 rounds each element to 2^-9 of itself.
  const std::vector<std::pair<torch::ScalarType, double>> types = {
      {torch::kFloat, 1e-5}, {torch::kBFloat16, 1e-2}, {torch::kHalf, 2e-3}};
  for (const auto& [dtype, grad_tolerance] : types) {
    // Odd widths take the element-wise loop, even ones whole 16-byte loads (32000: GPT-3's).
    for (int64_t V : {5, 50, 8195, 32000}) {
      auto base = torch::randn({37, V}) * 4;
      base[3] += 500;
      base[4] *= 30;
      base = base.to(torch::kCUDA, dtype);
      const auto targets = torch::randint(0, V, {37}, torch::kLong);
      const auto upstream = torch::randn({37});
      auto leaf = base.clone().requires_grad_(true);
      const auto ours = target_logprobs(leaf * 1.0f, targets.cuda());
      EXPECT_EQ(ours.scalar_type(), torch::kFloat);
      (ours * upstream.cuda()).sum().backward();
      const auto [ref, ref_grad] = float64_reference(base.cpu(), targets, upstream);
      EXPECT_LT(test_support::relative_difference(ours.cpu().to(torch::kDouble), ref), 2e-6)
          << dtype << " " << V;
      EXPECT_LT(test_support::relative_difference(leaf.grad().cpu().to(torch::kDouble), ref_grad),
                grad_tolerance)
          << dtype << " " << V;
    }
  }
}

TEST(TargetLogprobsTest, CudaKernelGivesAtensResultsOnNonFiniteRows) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  expect_atens_results_on_non_finite_rows(torch::kCUDA);
}

TEST(TargetLogprobsTest, CudaKernelGivesNanForTargetsOutOfRange) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const auto logits = torch::randn({3, 10}, torch::kCUDA);
  const auto out = target_logprobs(logits, torch::tensor({0, 10, -1}, torch::kLong).cuda()).cpu();
  EXPECT_TRUE(std::isfinite(out[0].item<float>()));
  EXPECT_TRUE(std::isnan(out[1].item<float>()));
  EXPECT_TRUE(std::isnan(out[2].item<float>()));
}

TEST(TargetLogprobsTest, CudaKernelKeepsALeafsValuesAndRefusesASecondBackward) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const auto base = torch::randn({8, 64}, torch::kCUDA).to(torch::kBFloat16);
  auto leaf = base.clone().requires_grad_(true);
  target_logprobs(leaf, torch::zeros({8}, torch::kLong).cuda()).sum().backward();
  EXPECT_TRUE(torch::equal(leaf.detach(), base));
  EXPECT_GT(leaf.grad().abs().max().item<double>(), 1e-3);

  const auto loss = target_logprobs(leaf * 2.0f, torch::zeros({8}, torch::kLong).cuda()).sum();
  loss.backward({}, /*retain_graph=*/true);
  EXPECT_THROW(loss.backward(), c10::Error);
}

}  // namespace
}  // namespace demix::ops
