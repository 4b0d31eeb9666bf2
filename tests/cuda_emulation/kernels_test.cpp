// demix's CUDA kernels' sources run on the CPU under the emulator (emulation.h) against float64
// references computed with ATen: column sums, GELU backward with its column sums, the fused
// add + LayerNorm forward, input gradient and weight/bias gradients, the LayerNorm weight/bias
// gradients of the unfused path, and the loss's target log-probabilities and their gradient.
// Shapes cover the packed (16-byte) and one-column paths, a misaligned start, ragged chunks and
// three summing passes.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <optional>
#include <vector>

#include "demix/ops/cuda/column_sums_cuda.h"
#include "demix/ops/cuda/gelu_cuda.h"
#include "demix/ops/cuda/layer_norm_cuda.h"
#include "demix/ops/cuda/layer_norm_fused_cuda.h"
#include "demix/ops/cuda/target_logprobs_cuda.h"

namespace demix::ops::cuda {
namespace {

struct Shape {
  int64_t rows, cols;
};

ElementType element_type(at::ScalarType dtype) {
  return dtype == at::kBFloat16 ? ElementType::kBFloat16 : ElementType::kFloat;
}

// A (rows, cols) matrix of normals times `scale` in dtype, starting `shift` elements into its
// allocation (a shift of 1 breaks 16-byte alignment).
at::Tensor matrix(const Shape& s, at::ScalarType dtype, int64_t shift = 0, double scale = 1) {
  const auto base = (torch::randn({s.rows * s.cols + shift}) * scale).to(dtype);
  return base.narrow(0, shift, s.rows * s.cols).view({s.rows, s.cols});
}

double relative_error(const at::Tensor& got, const at::Tensor& want) {
  const auto w = want.to(at::kDouble);
  return (got.to(at::kDouble) - w).norm().item<double>() / std::max(w.norm().item<double>(), 1e-30);
}

at::Tensor workspace_for(int64_t rows, int64_t cols) {
  return at::empty({std::max<int64_t>(column_sums_workspace(rows, cols), 1)});
}

const std::vector<Shape> kSumShapes = {{1, 8}, {300, 40}, {300, 50}, {70001, 8}, {0, 16}};

TEST(EmulatedColumnSums, MatchFloat64Sums) {
  torch::manual_seed(0);
  for (const auto dtype : {at::kFloat, at::kBFloat16})
    for (const auto& shape : kSumShapes)
      for (const int64_t shift : {0, 1}) {
        SCOPED_TRACE(::testing::Message()
                     << dtype << " " << shape.rows << "x" << shape.cols << " shift " << shift);
        const auto x = matrix(shape, dtype, shift);
        auto workspace = workspace_for(shape.rows, shape.cols);
        auto out = at::full({shape.cols}, 7.0f);
        ASSERT_EQ(column_sums(x.const_data_ptr(), element_type(dtype), shape.rows, shape.cols,
                              workspace.data_ptr<float>(), out.data_ptr<float>(), nullptr),
                  nullptr);
        const auto want = x.to(at::kDouble).sum(0);
        if (shape.rows == 0)
          EXPECT_EQ(out.abs().max().item<float>(), 0.0f);
        else
          EXPECT_LT(relative_error(out, want), 1e-6);
      }
}

TEST(EmulatedColumnSums, GeluBackwardAndItsColumnSumsMatchTheClosedForm) {
  torch::manual_seed(0);
  for (const auto dtype : {at::kFloat, at::kBFloat16})
    for (const auto& shape : std::vector<Shape>{{1, 8}, {300, 40}, {300, 50}, {600, 16}, {0, 8}})
      for (const int64_t shift : {0, 1}) {
        SCOPED_TRACE(::testing::Message()
                     << dtype << " " << shape.rows << "x" << shape.cols << " shift " << shift);
        const auto x = matrix(shape, dtype, shift, 3), grad = matrix(shape, dtype, shift);
        auto dx = at::full({shape.rows, shape.cols}, 7.0, at::TensorOptions().dtype(dtype));
        auto workspace = workspace_for(shape.rows, shape.cols);
        auto sums = at::full({shape.cols}, 7.0f);
        ASSERT_EQ(gelu_tanh_backward_and_column_sums(element_type(dtype), grad.const_data_ptr(),
                                                     x.const_data_ptr(), shape.rows, shape.cols,
                                                     dx.data_ptr(), workspace.data_ptr<float>(),
                                                     sums.data_ptr<float>(), nullptr),
                  nullptr);
        if (shape.rows == 0) {
          EXPECT_EQ(sums.abs().max().item<float>(), 0.0f);
          continue;
        }
        const auto x64 = x.to(at::kDouble), g64 = grad.to(at::kDouble);
        const double c = std::sqrt(2.0 / M_PI);
        const auto t = at::tanh(c * (x64 + 0.044715 * x64.pow(3)));
        const auto want =
            g64 * (0.5 * (1 + t) + 0.5 * x64 * (1 - t * t) * c * (1 + 3 * 0.044715 * x64 * x64));
        EXPECT_LT(relative_error(dx, want), dtype == at::kFloat ? 1e-6 : 4e-3);
        EXPECT_LT(relative_error(sums, dx.to(at::kDouble).sum(0)), 1e-6);
      }
}

// LayerNorm of s = x + delta in float64, and its gradients under upstream dy (plus a residual
// gradient on s).
struct LayerNormReference {
  at::Tensor s, y, mean, rstd, dx, grad_weight, grad_bias;
};

LayerNormReference reference(const at::Tensor& x, const at::Tensor& delta, const at::Tensor& weight,
                             const at::Tensor& bias, const at::Tensor& dy,
                             const at::Tensor& residual_grad, double eps) {
  LayerNormReference r;
  auto s = x.to(at::kDouble);
  if (delta.defined()) s = s + delta.to(at::kDouble);
  s = s.detach().requires_grad_(true);
  auto w = weight.to(at::kDouble).requires_grad_(true),
       b = bias.to(at::kDouble).requires_grad_(true);
  const auto y = at::layer_norm(s, {s.size(-1)}, w, b, eps);
  (y * dy.to(at::kDouble)).sum().backward();
  r.s = s.detach();
  r.y = y.detach();
  r.mean = r.s.mean(-1);
  r.rstd = 1 / (r.s.var(-1, /*unbiased=*/false) + eps).sqrt();
  r.dx = s.grad() + (residual_grad.defined() ? residual_grad.to(at::kDouble) : at::zeros_like(r.s));
  r.grad_weight = w.grad();
  r.grad_bias = b.grad();
  return r;
}

TEST(EmulatedLayerNorm, ForwardAndGradientsMatchFloat64) {
  torch::manual_seed(0);
  constexpr double kEps = 1e-5;
  for (const auto& shape : std::vector<Shape>{{37, 50}, {20, 768}, {9, 3}, {300, 8}})
    for (const auto delta_dtype :
         {std::optional<at::ScalarType>(), std::optional(at::kFloat), std::optional(at::kBFloat16)})
      for (const auto io_dtype : {at::kFloat, at::kBFloat16}) {  // y in the forward, dy backward
        SCOPED_TRACE(::testing::Message() << shape.rows << "x" << shape.cols << " delta "
                                          << (delta_dtype ? c10::toString(*delta_dtype) : "none")
                                          << " y/dy " << io_dtype);
        const auto x = matrix(shape, at::kFloat, 0, 3);
        const auto delta = delta_dtype ? matrix(shape, *delta_dtype, 0, 2) : at::Tensor();
        const auto weight = torch::randn({shape.cols}) * 0.5 + 1, bias = torch::randn({shape.cols});
        const auto dy = matrix(shape, io_dtype);
        const auto residual = delta_dtype ? matrix(shape, at::kFloat) : at::Tensor();
        const auto want = reference(x, delta, weight, bias, dy, residual, kEps);

        auto sum = at::full({shape.rows, shape.cols}, 7.0f);
        auto y = at::full({shape.rows, shape.cols}, 7.0, at::TensorOptions().dtype(io_dtype));
        auto stats = at::full({2, shape.rows}, 7.0f);
        ASSERT_EQ(layer_norm_forward(
                      x.const_data_ptr<float>(), delta.defined() ? delta.const_data_ptr() : nullptr,
                      element_type(delta_dtype.value_or(at::kFloat)),
                      weight.const_data_ptr<float>(), bias.const_data_ptr<float>(), shape.rows,
                      shape.cols, float(kEps), delta.defined() ? sum.data_ptr<float>() : nullptr,
                      y.data_ptr(), element_type(io_dtype), stats[0].data_ptr<float>(),
                      stats[1].data_ptr<float>(), nullptr),
                  nullptr);
        const double tol = io_dtype == at::kFloat ? 1e-5 : 4e-3;
        if (delta.defined()) EXPECT_LT(relative_error(sum, want.s), 1e-7);
        EXPECT_LT(relative_error(y, want.y), tol);
        EXPECT_LT(relative_error(stats[0], want.mean), 1e-6);
        EXPECT_LT(relative_error(stats[1], want.rstd), 1e-5);

        const auto s = delta.defined() ? sum : x;
        auto dx = at::full({shape.rows, shape.cols}, 7.0f);
        ASSERT_EQ(layer_norm_input_grad(
                      s.const_data_ptr<float>(), dy.const_data_ptr(), element_type(io_dtype),
                      weight.const_data_ptr<float>(), stats[0].const_data_ptr<float>(),
                      stats[1].const_data_ptr<float>(),
                      residual.defined() ? residual.const_data_ptr<float>() : nullptr, shape.rows,
                      shape.cols, dx.data_ptr<float>(), nullptr),
                  nullptr);
        EXPECT_LT(relative_error(dx, want.dx), 1e-5);

        auto workspace = workspace_for(shape.rows, 2 * shape.cols);
        auto grads = at::full({2, shape.cols}, 7.0f);
        ASSERT_EQ(
            layer_norm_weight_bias_grads(
                s.const_data_ptr<float>(), dy.const_data_ptr(), element_type(io_dtype),
                stats[0].const_data_ptr<float>(), stats[1].const_data_ptr<float>(), shape.rows,
                shape.cols, workspace.data_ptr<float>(), grads.data_ptr<float>(), nullptr),
            nullptr);
        EXPECT_LT(relative_error(grads[0], want.grad_weight), 1e-5);
        EXPECT_LT(relative_error(grads[1], want.grad_bias), 1e-5);
      }
}

TEST(EmulatedLayerNorm, UnfusedWeightAndBiasGradientsMatchFloat64) {
  torch::manual_seed(0);
  for (const auto& shape : std::vector<Shape>{{37, 50}, {20, 768}, {300, 8}, {600, 4}, {0, 8}})
    for (const int64_t shift : {0, 1}) {
      SCOPED_TRACE(::testing::Message() << shape.rows << "x" << shape.cols << " shift " << shift);
      const auto x = matrix(shape, at::kFloat, shift, 3), dy = matrix(shape, at::kFloat, shift);
      const auto mean = torch::randn({shape.rows}), rstd = torch::rand({shape.rows}) + 0.5;
      auto workspace = at::empty(
          {std::max<int64_t>(layer_norm_param_grads_workspace(shape.rows, shape.cols), 1)});
      auto grads = at::full({2, shape.cols}, 7.0f);
      ASSERT_EQ(
          layer_norm_param_grads(x.const_data_ptr<float>(), dy.const_data_ptr<float>(),
                                 mean.const_data_ptr<float>(), rstd.const_data_ptr<float>(),
                                 shape.rows, shape.cols, workspace.data_ptr<float>(),
                                 grads[0].data_ptr<float>(), grads[1].data_ptr<float>(), nullptr),
          nullptr);
      if (shape.rows == 0) {
        EXPECT_EQ(grads.abs().max().item<float>(), 0.0f);
        continue;
      }
      const auto x64 = x.to(at::kDouble), dy64 = dy.to(at::kDouble);
      const auto normed =
          (x64 - mean.to(at::kDouble).unsqueeze(1)) * rstd.to(at::kDouble).unsqueeze(1);
      EXPECT_LT(relative_error(grads[0], (dy64 * normed).sum(0)), 1e-6);
      EXPECT_LT(relative_error(grads[1], dy64.sum(0)), 1e-6);
    }
}

LogitType logit_type(at::ScalarType dtype) {
  switch (dtype) {
    case at::kBFloat16:
      return LogitType::kBFloat16;
    case at::kHalf:
      return LogitType::kHalf;
    default:
      return LogitType::kFloat;
  }
}

// Both kernels on `logits` (rows, v) in their dtype: the forward's outputs and the gradient the
// backward writes over a copy of the logits.
struct TargetLogprobs {
  at::Tensor log_sum_exp, out, grad;
};

TargetLogprobs run_target_logprobs(const at::Tensor& logits, const at::Tensor& targets,
                                   const at::Tensor& grad_out) {
  const int64_t rows = logits.size(0), v = logits.size(1);
  TargetLogprobs r{at::full({rows}, 7.0f), at::full({rows}, 7.0f), logits.clone()};
  const auto type = logit_type(logits.scalar_type());
  EXPECT_EQ(target_logprobs_forward(
                type, logits.const_data_ptr(), targets.const_data_ptr<int64_t>(), rows, v,
                r.log_sum_exp.data_ptr<float>(), r.out.data_ptr<float>(), nullptr),
            nullptr);
  EXPECT_EQ(target_logprobs_backward(type, r.grad.data_ptr(), targets.const_data_ptr<int64_t>(),
                                     rows, v, r.log_sum_exp.const_data_ptr<float>(),
                                     grad_out.const_data_ptr<float>(), nullptr),
            nullptr);
  return r;
}

TEST(EmulatedTargetLogprobs, ForwardAndGradientMatchFloat64) {
  torch::manual_seed(0);
  // v = 1000: whole 16-byte loads for every type; 1001 and a shifted start: one element at a time.
  for (const auto dtype : {at::kFloat, at::kBFloat16, at::kHalf})
    for (const auto& shape : std::vector<Shape>{{3, 1000}, {3, 1001}, {2, 8}})
      for (const int64_t shift : {0, 1}) {
        SCOPED_TRACE(::testing::Message()
                     << dtype << " " << shape.rows << "x" << shape.cols << " shift " << shift);
        const auto logits = matrix(shape, dtype, shift, 3);
        const auto targets = torch::randint(shape.cols, {shape.rows}, at::kLong);
        const auto grad_out = torch::randn({shape.rows});
        const auto got = run_target_logprobs(logits, targets, grad_out);

        const auto x64 = logits.to(at::kDouble);
        const auto log_sum_exp = x64.logsumexp(-1);
        const auto want = x64.gather(1, targets.unsqueeze(1)).squeeze(1) - log_sum_exp;
        EXPECT_LT(relative_error(got.log_sum_exp, log_sum_exp), 1e-6);
        EXPECT_LT((got.out.to(at::kDouble) - want).abs().max().item<double>(), 1e-5);
        const auto onehot = at::one_hot(targets, shape.cols).to(at::kDouble);
        const auto grad = grad_out.to(at::kDouble).unsqueeze(1) * (onehot - x64.softmax(-1));
        EXPECT_LT(relative_error(got.grad, grad), dtype == at::kFloat ? 1e-5 : 8e-3);
      }
}

TEST(EmulatedTargetLogprobs, InfiniteAndOutOfRangeRowsFollowLogSoftmax) {
  // Rows: some -inf logits (ignored), all -inf (NaN), a +inf logit (NaN), a NaN logit (NaN), a
  // target past the end and a negative target (NaN, no read outside the row).
  const float inf = INFINITY;
  auto logits = torch::randn({6, 16});
  logits.index_put_({0, at::indexing::Slice(0, 8)}, -inf);
  logits[1].fill_(-inf);
  logits[2][3] = inf;
  logits[3][5] = NAN;
  const auto targets = torch::tensor({9, 0, 1, 1, 16, -1}, at::kLong);
  const auto got = run_target_logprobs(logits, targets, torch::ones({6}));

  const auto row0 = logits[0].to(at::kDouble).log_softmax(-1);
  EXPECT_NEAR(got.out[0].item<float>(), row0[9].item<double>(), 1e-5);
  EXPECT_EQ(got.grad[0].narrow(0, 0, 8).abs().max().item<float>(), 0.0f);  // -inf: exp gives 0
  for (int64_t row = 1; row < 6; ++row) EXPECT_TRUE(std::isnan(got.out[row].item<float>())) << row;
}

}  // namespace
}  // namespace demix::ops::cuda
