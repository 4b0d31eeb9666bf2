// bf16_linear against float64 arithmetic on the bf16-rounded operands: the output carries bf16
// rounding; the weight and bias gradients, and the input gradient of an fp32 input, must be exact
// sums in fp32 (an implementation that rounded them to bf16, as autocast's linear does, misses by
// ~1e-3); a bf16 input gets a bf16 gradient.

#include "demix/ops/bf16_linear.h"

#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include "support/scoped_policy.h"
#include "support/tensor_compare.h"

namespace demix::ops {
namespace {

using test_support::relative_norm_difference;

void check_on(const c10::Device& device, at::ScalarType x_dtype) {
  torch::manual_seed(0);
  const auto fp32 = torch::TensorOptions().dtype(torch::kFloat).device(device);
  auto x = torch::randn({3, 40, 64}, fp32.dtype(x_dtype)).requires_grad_(true);
  auto weight = torch::randn({48, 64}, fp32).requires_grad_(true);
  auto bias = torch::randn({48}, fp32).requires_grad_(true);
  const auto upstream = torch::randn({3, 40, 48}, fp32);

  const auto y = bf16_linear(x, weight, bias);
  ASSERT_EQ(y.scalar_type(), at::kBFloat16);
  ASSERT_EQ(y.sizes(), (std::vector<int64_t>{3, 40, 48}));
  (y.to(at::kFloat) * upstream).sum().backward();

  auto rounded = [](const at::Tensor& t) {
    return t.detach().cpu().to(at::kBFloat16).to(at::kDouble);
  };
  const auto x64 = rounded(x).view({-1, 64}), w64 = rounded(weight),
             gy = rounded(upstream).view({-1, 48});
  const auto y_ref = at::mm(x64, w64.t()) + rounded(bias);
  EXPECT_LT(relative_norm_difference(y.view({-1, 48}), y_ref), 1e-2);
  ASSERT_EQ(x.grad().scalar_type(), x_dtype);
  EXPECT_LT(relative_norm_difference(x.grad().view({-1, 64}), at::mm(gy, w64)),
            x_dtype == at::kFloat ? 1e-5 : 1e-2);
  ASSERT_EQ(weight.grad().scalar_type(), at::kFloat);
  EXPECT_LT(relative_norm_difference(weight.grad(), at::mm(gy.t(), x64)), 1e-5);
  ASSERT_EQ(bias.grad().scalar_type(), at::kFloat);
  EXPECT_LT(relative_norm_difference(bias.grad(), gy.sum(0)), 1e-5);
}

TEST(Bf16LinearTest, MatchesFloat64OnRoundedOperandsOnTheCpu) {
  check_on(c10::Device(c10::kCPU), at::kFloat);
  check_on(c10::Device(c10::kCPU), at::kBFloat16);
}

TEST(Bf16LinearTest, MatchesFloat64OnRoundedOperandsOnTheGpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  for (const bool fused : {false, true}) {  // the bias gradient by ATen's sum, then column_sums
    SCOPED_TRACE(fused ? "fused CUDA kernels" : "ATen");
    const test_support::FusedCudaKernels kernels(fused);
    check_on(c10::Device(c10::kCUDA), at::kFloat);
    check_on(c10::Device(c10::kCUDA), at::kBFloat16);
  }
}

}  // namespace
}  // namespace demix::ops
