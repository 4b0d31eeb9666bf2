// The experts' node against autograd through each expert's own linear, GELU, linear in float64:
// in the parameters' dtype on the CPU, in bf16 with fp32 gradients (the CUDA autocast recipe, run
// here on the CPU and, where there is one, on a GPU under autocast), and where it applies.

#include "demix/ops/expert_mlps.h"

#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include "demix/core/autocast.h"
#include "demix/model/mlp.h"
#include "support/scoped_policy.h"
#include "support/tensor_compare.h"

namespace demix::ops {
namespace {

using model::Mlp;

struct Case {
  std::vector<Mlp> experts;
  std::vector<ExpertWeights> raw;
  std::vector<int64_t> rows = {5, 3, 7};
  at::Tensor x, upstream;
};

Case make_case(torch::Dtype dtype, const c10::Device& device = c10::Device(c10::kCPU)) {
  torch::manual_seed(0);
  Case c;
  for (int e = 0; e < 3; ++e) {
    c.experts.emplace_back(8, 16);
    c.experts.back()->to(device, dtype);
    const auto& mlp = c.experts.back();
    c.raw.push_back({mlp->fc1->weight, mlp->fc1->bias, mlp->fc2->weight, mlp->fc2->bias});
  }
  const auto options = torch::TensorOptions().dtype(dtype).device(device);
  c.x = torch::randn({15, 8}, options);
  c.upstream = torch::randn({15, 8}, options);
  return c;
}

// A tensor rounded to bf16 and back, in float64 on the CPU.
at::Tensor bf16_rounded(const at::Tensor& t) {
  return t.detach().cpu().to(torch::kBFloat16).to(torch::kDouble);
}

// The output, x's gradient and every parameter's gradient (name "e.param"), by autograd through
// each expert on its rows, in float64 on `operand`s of x and the parameters (bf16_rounded for
// the bf16 recipe).
using Operand = at::Tensor (*)(const at::Tensor&);
at::Tensor as_double(const at::Tensor& t) { return t.detach().cpu().to(torch::kDouble); }

std::map<std::string, at::Tensor> reference(const Case& c, Operand operand = as_double) {
  std::map<std::string, at::Tensor> out;
  auto x = operand(c.x).requires_grad_(true);
  std::vector<at::Tensor> ys;
  std::vector<std::map<std::string, at::Tensor>> params(3);
  int64_t first = 0;
  for (size_t e = 0; e < 3; ++e) {
    for (const auto& p : c.experts[e]->named_parameters())
      params[e][p.key()] = operand(p.value()).requires_grad_(p.value().requires_grad());
    const auto rows = x.narrow(0, first, c.rows[e]);
    const auto h =
        at::gelu(at::linear(rows, params[e]["fc1.weight"], params[e]["fc1.bias"]), "tanh");
    ys.push_back(at::linear(h, params[e]["fc2.weight"], params[e]["fc2.bias"]));
    first += c.rows[e];
  }
  const auto y = at::cat(ys);
  (y * operand(c.upstream)).sum().backward();
  out["y"] = y.detach();
  out["x"] = x.grad();
  for (size_t e = 0; e < 3; ++e)
    for (auto& [name, p] : params[e]) out[std::to_string(e) + "." + name] = p.grad();
  return out;
}

// Runs the node on c (in `dtype`, or in the dtype expert_mlps_dtype picks) and compares the
// output and every gradient with the float64 reference; the gradients must keep the dtypes of x
// and of the parameters.
void expect_matches(const Case& c, double tolerance, std::optional<at::ScalarType> dtype = {},
                    Operand operand = as_double) {
  const auto ref = reference(c, operand);
  auto x = c.x.clone().requires_grad_(true);
  if (!dtype) dtype = expert_mlps_dtype(x, c.raw);
  ASSERT_TRUE(dtype.has_value()) << "expert_mlps does not apply";
  const auto y = expert_mlps(x, c.rows, c.raw, *dtype);
  ASSERT_EQ(y.scalar_type(), *dtype);
  (y.to(c.upstream.scalar_type()) * c.upstream).sum().backward();
  EXPECT_LT(test_support::relative_difference(as_double(y), ref.at("y")), tolerance);
  ASSERT_EQ(x.grad().scalar_type(), x.scalar_type());
  EXPECT_LT(test_support::relative_difference(as_double(x.grad()), ref.at("x")), tolerance);
  for (size_t e = 0; e < 3; ++e)
    for (const auto& p : c.experts[e]->named_parameters()) {
      const auto& want = ref.at(std::to_string(e) + "." + p.key());
      if (!want.defined()) {
        EXPECT_FALSE(p.value().grad().defined()) << e << "." << p.key();
        continue;
      }
      ASSERT_TRUE(p.value().grad().defined()) << e << "." << p.key();
      ASSERT_EQ(p.value().grad().scalar_type(), p.value().scalar_type()) << e << "." << p.key();
      EXPECT_LT(test_support::relative_difference(as_double(p.value().grad()), want), tolerance)
          << e << "." << p.key();
    }
}

TEST(ExpertMlpsTest, MatchesPerExpertAutogradInFloat64) {
  expect_matches(make_case(torch::kDouble), 1e-12);
}

TEST(ExpertMlpsTest, MatchesPerExpertAutogradInFloat32) {
  expect_matches(make_case(torch::kFloat), 1e-5);  // through the CPU GELU kernel
}

// Each expert's GEMMs through OpenBLAS, from the experts' threads.
TEST(ExpertMlpsTest, MatchesPerExpertAutogradThroughOpenBlasOnThreads) {
  if (!openblas_available()) GTEST_SKIP() << "no OpenBLAS (CpuGemmTest.OpenBlasLoads says why)";
  const test_support::CpuGemmLibrary openblas(CpuGemm::kOpenBlas);
  const int threads = at::get_num_threads();
  at::set_num_threads(2);
  expect_matches(make_case(torch::kFloat), 1e-5);
  at::set_num_threads(threads);
}

TEST(ExpertMlpsTest, AFrozenExpertGetsNoGradient) {
  auto c = make_case(torch::kDouble);
  for (auto& p : c.experts[1]->parameters()) p.requires_grad_(false);
  expect_matches(c, 1e-12);
}

// bf16 operands, fp32 gradients: float64 on the rounded operands is exact but for the bf16
// roundings of the fc1 output, the GELU output, the output and the upstream gradients.
TEST(ExpertMlpsTest, Bf16RecipeMatchesFloat64OnRoundedOperands) {
  expect_matches(make_case(torch::kFloat), 3e-2, at::kBFloat16, bf16_rounded);
}

TEST(ExpertMlpsTest, AppliesToPlainExpertsOnThreadsOutsideCpuAutocast) {
  auto c = make_case(torch::kFloat);
  const int threads = at::get_num_threads();
  at::set_num_threads(2);
  EXPECT_EQ(expert_mlps_dtype(c.x, c.raw), at::kFloat);
  EXPECT_EQ(expert_mlps_dtype(c.x.to(torch::kDouble), c.raw), std::nullopt);  // not their dtype
  EXPECT_EQ(expert_mlps_dtype(c.x, {c.raw[0]}), std::nullopt);  // one expert: nothing to spread
  {
    const Autocast autocast(c10::kCPU, true);
    EXPECT_EQ(expert_mlps_dtype(c.x, c.raw), std::nullopt);
  }
  auto unbiased = c.raw[1];
  unbiased.fc2_bias = at::Tensor();
  EXPECT_EQ(expert_mlps_dtype(c.x, {c.raw[0], unbiased}), std::nullopt);
  at::set_num_threads(1);
  EXPECT_EQ(expert_mlps_dtype(c.x, c.raw), std::nullopt);
  at::set_num_threads(threads);
}

// On a GPU: not without the fused kernels; with them, in fp32 outside autocast and in bf16
// (fp32 gradients) under bf16 autocast.
TEST(ExpertMlpsTest, CudaMatchesFloat64) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  auto c = make_case(torch::kFloat, c10::Device(c10::kCUDA));
  {
    const test_support::FusedCudaKernels kernels(false);
    EXPECT_EQ(expert_mlps_dtype(c.x, c.raw), std::nullopt);
  }
  const test_support::FusedCudaKernels kernels(true);
  expect_matches(c, 1e-5);
  for (auto& e : c.experts) e->zero_grad();
  const Autocast autocast(c10::kCUDA, true);
  expect_matches(c, 3e-2, std::nullopt, bf16_rounded);
  EXPECT_EQ(expert_mlps_dtype(c.x, c.raw), at::kBFloat16);
}

}  // namespace
}  // namespace demix::ops
