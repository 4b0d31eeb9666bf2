// gelu_tanh against the closed form in float64: x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) and
// its derivative, over the range an MLP sees and the extremes.

#include "demix/ops/gelu.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <limits>

namespace demix::ops {
namespace {

torch::Tensor tanh_inner(const torch::Tensor& x) {
  return torch::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x.pow(3)));
}

TEST(GeluTest, ValuesAndGradientsMatchTheClosedFormInFloat64) {
  torch::manual_seed(0);
  // 100k normals (sigma 3), a ramp through the tails to +-60, and the exact zero.
  const auto x =
      torch::cat({torch::randn({100000}) * 3, torch::linspace(-60, 60, 4001), torch::zeros({1})})
          .contiguous();
  const auto upstream = torch::randn_like(x);
  auto leaf = x.clone().requires_grad_(true);
  const auto y = gelu_tanh(leaf);
  (y * upstream).sum().backward();

  const auto x64 = x.to(torch::kDouble), g64 = upstream.to(torch::kDouble);
  const auto t = tanh_inner(x64);
  const auto y_ref = 0.5 * x64 * (1 + t);
  const auto dy_ref = 0.5 * (1 + t) + 0.5 * x64 * (1 - t * t) * std::sqrt(2.0 / M_PI) *
                                          (1 + 3 * 0.044715 * x64 * x64);
  // A few fp32 ulps of each value's scale; ATen's own fp32 GELU misses by up to ~4e-7 on these.
  const auto y_err = (y.to(torch::kDouble) - y_ref).abs() / x64.abs().clamp_min(1);
  EXPECT_LT(y_err.max().item<double>(), 2e-6);
  const auto dx_err = (leaf.grad().to(torch::kDouble) - g64 * dy_ref).abs() /
                      (g64.abs() * x64.abs().clamp_min(1)).clamp_min(1e-30);
  EXPECT_LT(dx_err.max().item<double>(), 2e-5);
  EXPECT_EQ(y[-1].item<float>(), 0.0f);
}

TEST(GeluTest, NonFiniteInputsStayNonFinite) {
  const float inf = std::numeric_limits<float>::infinity();
  const auto y = gelu_tanh(torch::tensor({std::nanf(""), inf, -1e30f, 1e30f}));
  EXPECT_TRUE(std::isnan(y[0].item<float>()));
  EXPECT_EQ(y[1].item<float>(), inf);
  EXPECT_EQ(y[2].item<float>(), -0.0f);
  EXPECT_EQ(y[3].item<float>(), 1e30f);
}

TEST(GeluTest, OtherDtypesAndLayoutsTakeAtenGelu) {
  torch::manual_seed(1);
  const auto x = torch::randn({64, 48});
  for (const auto& input : {x.to(torch::kBFloat16), x.to(torch::kDouble), x.t()}) {
    EXPECT_TRUE(torch::equal(gelu_tanh(input), at::gelu(input, "tanh")));
  }
}

}  // namespace
}  // namespace demix::ops
