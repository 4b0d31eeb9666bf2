// The fused CUDA kernels' column sums (column_sums, and gelu_tanh_backward_and_column_sums)
// against float64 sums and the closed-form GELU derivative on the CPU. Shapes cover one chunk of
// rows, a ragged last chunk, more than 256 chunks (three passes), 16-byte loads (768, 3072) and
// the one-column path (50, and a misaligned start).

#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include <cmath>
#include <vector>

#include "demix/ops/gelu.h"
#include "demix/ops/mixed_precision.h"
#include "support/scoped_policy.h"
#include "support/tensor_compare.h"

namespace demix::ops {
namespace {

using test_support::relative_norm_difference;

struct Shape {
  int64_t rows, cols;
};
const std::vector<Shape> kShapes = {{100, 768}, {1000, 50}, {70001, 768}, {300, 3072}, {0, 64}};

// A (rows, cols) matrix of normals (standard deviation `scale`) on the GPU in dtype, its first
// element `shift` elements past the start of its allocation (a shift of 1 breaks 16-byte
// alignment).
at::Tensor matrix(const Shape& s, at::ScalarType dtype, int64_t shift, double scale = 1) {
  const auto options = torch::TensorOptions().device(torch::kCUDA).dtype(dtype);
  const auto base = (torch::randn({s.rows * s.cols + shift}, options) * scale).to(dtype);
  return base.narrow(0, shift, s.rows * s.cols).view({s.rows, s.cols});
}

// Runs check(dtype, shape, shift) for fp32 and bf16, each shape, aligned and misaligned.
template <class Check>
void for_each_case(const Check& check) {
  for (const auto dtype : {at::kFloat, at::kBFloat16})
    for (const auto& shape : kShapes)
      for (const int64_t shift : {0, 1}) {
        SCOPED_TRACE(::testing::Message()
                     << dtype << " " << shape.rows << "x" << shape.cols << " shift " << shift);
        check(dtype, shape, shift);
      }
}

TEST(ColumnSumsTest, CudaMatchesFloat64Sums) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  torch::manual_seed(0);
  const test_support::FusedCudaKernels kernels(true);
  for_each_case([](at::ScalarType dtype, const Shape& shape, int64_t shift) {
    const auto x = matrix(shape, dtype, shift);
    const auto sums = column_sums(x);
    ASSERT_EQ(sums.scalar_type(), at::kFloat);
    const auto want = x.cpu().to(at::kDouble).sum(0);
    if (shape.rows == 0) {
      EXPECT_EQ(sums.cpu().abs().max().item<float>(), 0.0f);
      return;
    }
    EXPECT_LT(relative_norm_difference(sums, want), 1e-6);
    EXPECT_TRUE(at::equal(sums, column_sums(x)));  // deterministic: the same bits again
  });
}

TEST(ColumnSumsTest, CudaGeluBackwardAndColumnSumsMatchTheClosedForm) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  torch::manual_seed(0);
  const test_support::FusedCudaKernels kernels(true);
  for_each_case([](at::ScalarType dtype, const Shape& shape, int64_t shift) {
    const auto x = matrix(shape, dtype, shift, /*scale=*/3);
    const auto grad = matrix(shape, dtype, shift);
    const auto [dx, sums] = gelu_tanh_backward_and_column_sums(grad, x);
    ASSERT_EQ(dx.scalar_type(), dtype);
    ASSERT_EQ(sums.scalar_type(), at::kFloat);
    // d/dx x/2 (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3), in float64.
    const auto x64 = x.cpu().to(at::kDouble), g64 = grad.cpu().to(at::kDouble);
    const auto t = at::tanh(std::sqrt(2.0 / M_PI) * (x64 + 0.044715 * x64.pow(3)));
    const auto derivative = 0.5 * (1 + t) + 0.5 * x64 * (1 - t * t) * std::sqrt(2.0 / M_PI) *
                                                (1 + 3 * 0.044715 * x64 * x64);
    const auto want = g64 * derivative;
    if (shape.rows == 0) {
      EXPECT_EQ(dx.numel(), 0);
      EXPECT_EQ(sums.cpu().abs().max().item<float>(), 0.0f);
      return;
    }
    // bf16 stores each element rounded (relative 2^-9); the sums are of the stored values.
    EXPECT_LT(relative_norm_difference(dx, want), dtype == at::kFloat ? 1e-5 : 4e-3);
    EXPECT_LT(relative_norm_difference(sums, dx.cpu().to(at::kDouble).sum(0)), 1e-6);
  });
}

}  // namespace
}  // namespace demix::ops
