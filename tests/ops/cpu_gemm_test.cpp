// The CPU GEMM dispatch (cpu_gemm.h) and the linear node built on it (linear_map.h) against
// float64 ATen: every transposition and bias combination, rows of a larger output, calls from the
// experts' OpenMP threads, and the linear node's output and gradients with and without a bias.

#include "demix/ops/cpu/cpu_gemm.h"

#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <string>
#include <vector>

#include "demix/ops/linear_map.h"
#include "support/scoped_policy.h"
#include "support/tensor_compare.h"

namespace demix::ops {
namespace {

using test_support::CpuGemmLibrary;
using test_support::relative_difference;

at::Tensor as_double(const at::Tensor& t) { return t.detach().to(at::kDouble); }

// (rows, cols) as given, or as the transposed view of a (cols, rows) tensor.
at::Tensor matrix(int64_t rows, int64_t cols, bool transposed) {
  return transposed ? torch::randn({cols, rows}).t() : torch::randn({rows, cols});
}

TEST(CpuGemmTest, OpenBlasLoads) {  // scripts/setup.sh installs it
  std::string why_not;
  EXPECT_TRUE(openblas_available(&why_not)) << why_not;
}

TEST(CpuGemmTest, EveryLayoutMatchesFloat64) {
  torch::manual_seed(0);
  constexpr int64_t m = 37, k = 19, n = 23;
  for (const auto library : {CpuGemm::kAten, CpuGemm::kOpenBlas})
    for (const bool trans_a : {false, true})
      for (const bool trans_b : {false, true})
        for (const bool with_bias : {false, true}) {
          SCOPED_TRACE(::testing::Message() << to_string(library) << " trans_a " << trans_a
                                            << " trans_b " << trans_b << " bias " << with_bias);
          const CpuGemmLibrary use(library);
          const auto a = matrix(m, k, trans_a), b = matrix(k, n, trans_b);
          const auto bias = with_bias ? torch::randn({n}) : at::Tensor();
          auto want = as_double(a).mm(as_double(b));
          if (with_bias) want += as_double(bias);
          // Into the first n columns of wider rows, NaN beforehand: read only with a bias.
          auto wide = at::full({m, n + 5}, NAN);
          auto out = wide.narrow(1, 0, n);
          gemm_out(out, a, b, bias);
          EXPECT_LT(relative_difference(as_double(out), want), 1e-5);
          EXPECT_TRUE(wide.narrow(1, n, 5).isnan().all().item<bool>());  // untouched
          EXPECT_LT(relative_difference(as_double(gemm(a, b, bias)), want), 1e-5);
        }
}

// The experts call it from at::parallel_for's threads, each on its own problem.
TEST(CpuGemmTest, OpenBlasFromParallelThreadsMatchesFloat64) {
  torch::manual_seed(0);
  const CpuGemmLibrary use(CpuGemm::kOpenBlas);
  constexpr int64_t kProblems = 8;
  std::vector<at::Tensor> a, b, out(kProblems);
  for (int64_t i = 0; i < kProblems; ++i) {
    a.push_back(torch::randn({64 + i, 96}));
    b.push_back(torch::randn({96, 80}));
  }
  at::parallel_for(0, kProblems, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) out[size_t(i)] = gemm(a[size_t(i)], b[size_t(i)]);
  });
  for (int64_t i = 0; i < kProblems; ++i)
    EXPECT_LT(relative_difference(as_double(out[size_t(i)]),
                                  as_double(a[size_t(i)]).mm(as_double(b[size_t(i)]))),
              1e-5)
        << i;
}

// (An unknown train.cpu_gemm is refused by the config parser: ConfigTest.)
TEST(CpuGemmTest, ChoicesResolve) {
  EXPECT_EQ(resolve_cpu_gemm(CpuGemmChoice::kAten), CpuGemm::kAten);
  EXPECT_EQ(resolve_cpu_gemm(CpuGemmChoice::kOpenblas), CpuGemm::kOpenBlas);
  const auto chosen = resolve_cpu_gemm(CpuGemmChoice::kAuto);
  EXPECT_TRUE(chosen == CpuGemm::kAten || chosen == CpuGemm::kOpenBlas);
}

// linear_map through OpenBLAS against at::linear's autograd in float64: output, and the
// gradients of x (3-D), the weight and the bias, for a layer, a bias-free head and a frozen weight.
TEST(LinearMapTest, OpenBlasNodeMatchesFloat64Autograd) {
  torch::manual_seed(0);
  const CpuGemmLibrary use(CpuGemm::kOpenBlas);
  for (const bool with_bias : {true, false})
    for (const bool frozen_weight : {false, true}) {
      SCOPED_TRACE(::testing::Message() << "bias " << with_bias << " frozen " << frozen_weight);
      const auto x = torch::randn({2, 5, 7}).requires_grad_(true);
      const auto weight = torch::randn({3, 7}).requires_grad_(!frozen_weight);
      const auto bias = with_bias ? torch::randn({3}).requires_grad_(true) : at::Tensor();
      const auto upstream = torch::randn({2, 5, 3});
      const auto y = linear_map(x, weight, bias);
      (y * upstream).sum().backward();

      const auto x64 = as_double(x).requires_grad_(true);
      const auto w64 = as_double(weight).requires_grad_(!frozen_weight);
      const auto b64 = with_bias ? as_double(bias).requires_grad_(true) : at::Tensor();
      const auto want = at::linear(x64, w64, b64);
      (want * as_double(upstream)).sum().backward();

      EXPECT_NE(y.grad_fn()->name().find("CpuLinear"), std::string::npos) << y.grad_fn()->name();
      EXPECT_LT(relative_difference(as_double(y), want.detach()), 1e-5);
      EXPECT_LT(relative_difference(as_double(x.grad()), x64.grad()), 1e-5);
      if (frozen_weight)
        EXPECT_FALSE(weight.grad().defined());
      else
        EXPECT_LT(relative_difference(as_double(weight.grad()), w64.grad()), 1e-5);
      if (with_bias) EXPECT_LT(relative_difference(as_double(bias.grad()), b64.grad()), 1e-5);
    }
}

}  // namespace
}  // namespace demix::ops
