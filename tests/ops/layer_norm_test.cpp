// layer_norm's CUDA path (its own weight and bias gradients), and add_layer_norm's fused CUDA
// path, against autograd through at::layer_norm in float64 on the CPU.

#include "demix/ops/layer_norm.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <vector>

#include "demix/core/autocast.h"
#include "support/scoped_policy.h"
#include "support/tensor_compare.h"

namespace demix::ops {
namespace {

TEST(LayerNormTest, CudaGradientsMatchFloat64) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  torch::manual_seed(0);
  // 16-byte loads (768, 1024) with a ragged last chunk of rows, and the element-wise path (50).
  for (const std::vector<int64_t>& shape :
       std::vector<std::vector<int64_t>>{{3, 337, 768}, {5, 1024}, {40, 50}}) {
    const int64_t width = shape.back();
    torch::nn::LayerNorm norm(torch::nn::LayerNormOptions({width}));
    torch::NoGradGuard no_grad;
    norm->weight.copy_(torch::randn({width}) * 0.5 + 1);
    norm->bias.copy_(torch::randn({width}) * 0.1);
    const auto x = torch::randn(shape) * 3 + 1, upstream = torch::randn(shape);

    torch::nn::LayerNorm reference(torch::nn::LayerNormOptions({width}));
    reference->to(torch::kDouble);
    reference->weight.copy_(norm->weight);
    reference->bias.copy_(norm->bias);
    auto ref_x = x.to(torch::kDouble).requires_grad_(true);

    norm->to(torch::kCUDA);
    auto ours_x = x.cuda().requires_grad_(true);
    torch::AutoGradMode grad(true);
    const auto ours = layer_norm(norm, ours_x);
    (ours * upstream.cuda()).sum().backward();
    const auto ref = reference->forward(ref_x);
    (ref * upstream.to(torch::kDouble)).sum().backward();

    using test_support::relative_difference;
    const auto as_double = [](const at::Tensor& t) { return t.cpu().to(torch::kDouble); };
    EXPECT_LT(relative_difference(as_double(ours), ref), 1e-5) << width;
    EXPECT_LT(relative_difference(as_double(ours_x.grad()), ref_x.grad()), 1e-5) << width;
    EXPECT_LT(relative_difference(as_double(norm->weight.grad()), reference->weight.grad()), 1e-5)
        << width;
    EXPECT_LT(relative_difference(as_double(norm->bias.grad()), reference->bias.grad()), 1e-5)
        << width;
  }
}

// sum = x + delta and normed = LayerNorm(sum), with an upstream gradient on each (the residual
// stream's and the LayerNorm's): fp32 or bf16 delta, none, and normed in bf16 under autocast.
TEST(LayerNormTest, CudaFusedAddLayerNormMatchesFloat64) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  torch::manual_seed(0);
  const test_support::FusedCudaKernels kernels(true);
  using test_support::relative_norm_difference;
  for (const std::vector<int64_t>& shape :
       std::vector<std::vector<int64_t>>{{3, 337, 768}, {5, 1024}, {40, 50}, {1, 3}})
    for (const auto delta_dtype :
         {std::optional<at::ScalarType>(), std::optional(at::kFloat), std::optional(at::kBFloat16)})
      for (const bool autocast : {false, true}) {
        SCOPED_TRACE(::testing::Message() << shape.back() << " delta "
                                          << (delta_dtype ? c10::toString(*delta_dtype) : "none")
                                          << (autocast ? " autocast" : ""));
        const int64_t width = shape.back();
        torch::nn::LayerNorm norm(torch::nn::LayerNormOptions({width}));
        {
          torch::NoGradGuard no_grad;
          norm->weight.copy_(torch::randn({width}) * 0.5 + 1);
          norm->bias.copy_(torch::randn({width}) * 0.1);
        }
        const auto x = torch::randn(shape) * 3 + 1;
        const auto delta = delta_dtype ? (torch::randn(shape) * 2).to(*delta_dtype) : at::Tensor();
        const auto up_sum = torch::randn(shape), up_normed = torch::randn(shape);

        // float64 reference on the same (rounded) delta.
        torch::nn::LayerNorm reference(torch::nn::LayerNormOptions({width}));
        reference->to(torch::kDouble);
        {
          torch::NoGradGuard no_grad;
          reference->weight.copy_(norm->weight);
          reference->bias.copy_(norm->bias);
        }
        auto ref_x = x.to(torch::kDouble).requires_grad_(true);
        auto ref_delta =
            delta.defined() ? delta.to(torch::kDouble).requires_grad_(true) : at::Tensor();
        const auto ref_sum = delta.defined() ? ref_x + ref_delta : ref_x;
        const auto ref_normed = reference->forward(ref_sum);
        ((delta.defined() ? ref_sum * up_sum.to(torch::kDouble) : ref_sum.sum() * 0) +
         ref_normed * up_normed.to(torch::kDouble))
            .sum()
            .backward();

        norm->to(torch::kCUDA);
        auto ours_x = x.cuda().requires_grad_(true);
        auto ours_delta = delta.defined() ? delta.cuda().requires_grad_(true) : at::Tensor();
        AddNorm out;
        {
          const Autocast cast(c10::kCUDA, autocast);
          out = add_layer_norm(norm, ours_x,
                               delta.defined() ? std::optional(ours_delta) : std::nullopt);
        }
        ASSERT_EQ(out.normed.scalar_type(), autocast ? at::kBFloat16 : at::kFloat);
        ASSERT_EQ(out.sum.scalar_type(), at::kFloat);
        const auto loss = (out.normed.to(at::kFloat) * up_normed.cuda()).sum() +
                          (delta.defined() ? (out.sum * up_sum.cuda()).sum() : out.sum.sum() * 0);
        loss.backward();

        // A bf16 normed is rounded once (2^-9); so is the gradient that reaches it.
        const double tol = autocast ? 5e-3 : 1e-5;
        EXPECT_LT(relative_norm_difference(out.sum, ref_sum), 1e-6);
        EXPECT_LT(relative_norm_difference(out.normed, ref_normed), tol);
        EXPECT_LT(relative_norm_difference(ours_x.grad(), ref_x.grad()), tol);
        if (delta.defined()) {
          ASSERT_EQ(ours_delta.grad().scalar_type(), delta.scalar_type());
          EXPECT_LT(relative_norm_difference(ours_delta.grad(), ref_delta.grad()),
                    delta.scalar_type() == at::kBFloat16 ? 5e-3 : tol);
        }
        EXPECT_LT(relative_norm_difference(norm->weight.grad(), reference->weight.grad()), tol);
        EXPECT_LT(relative_norm_difference(norm->bias.grad(), reference->bias.grad()), tol);
      }
}

// The fused node's autograd wiring on the CPU (its ATen stand-ins for the kernels): each
// combination of delta, normed dtype, which outputs are used and which inputs want gradients,
// against float64 autograd.
TEST(LayerNormTest, FusedAddLayerNormWiringMatchesFloat64OnTheCpu) {
  torch::manual_seed(0);
  using test_support::relative_norm_difference;
  const std::vector<int64_t> shape = {3, 7, 24};
  for (const auto delta_dtype :
       {std::optional<at::ScalarType>(), std::optional(at::kFloat), std::optional(at::kBFloat16)})
    for (const auto normed_dtype : {at::kFloat, at::kBFloat16})
      for (const bool use_sum : {false, true})
        for (const bool use_normed : {false, true})
          for (const int frozen : {0, 1, 2, 3}) {  // none, x, delta, the parameters
            if (!use_sum && !use_normed) continue;
            SCOPED_TRACE(::testing::Message()
                         << "delta " << (delta_dtype ? c10::toString(*delta_dtype) : "none")
                         << " normed " << normed_dtype << " use sum " << use_sum << " normed "
                         << use_normed << " frozen " << frozen);
            torch::nn::LayerNorm norm(torch::nn::LayerNormOptions({shape.back()}));
            {
              torch::NoGradGuard no_grad;
              norm->weight.copy_(torch::randn({shape.back()}) * 0.5 + 1);
              norm->bias.copy_(torch::randn({shape.back()}) * 0.1);
            }
            for (auto& p : norm->parameters()) p.requires_grad_(frozen != 3);
            const auto x = torch::randn(shape) * 3 + 1;
            const auto delta =
                delta_dtype ? (torch::randn(shape) * 2).to(*delta_dtype) : at::Tensor();
            const auto up_sum = torch::randn(shape), up_normed = torch::randn(shape);

            auto ref_w = norm->weight.detach().to(torch::kDouble).requires_grad_(true);
            auto ref_b = norm->bias.detach().to(torch::kDouble).requires_grad_(true);
            auto ref_x = x.to(torch::kDouble).requires_grad_(true);
            auto ref_delta =
                delta.defined() ? delta.to(torch::kDouble).requires_grad_(true) : at::Tensor();
            const auto ref_sum = delta.defined() ? ref_x + ref_delta : ref_x;
            const auto ref_normed = at::layer_norm(ref_sum, {shape.back()}, ref_w, ref_b, 1e-5);
            auto ref_loss = ref_sum.sum() * 0;
            if (use_sum) ref_loss = ref_loss + (ref_sum * up_sum.to(torch::kDouble)).sum();
            if (use_normed) ref_loss = ref_loss + (ref_normed * up_normed.to(torch::kDouble)).sum();
            ref_loss.backward();

            auto ours_x = x.clone().requires_grad_(frozen != 1);
            auto ours_delta =
                delta.defined() ? delta.clone().requires_grad_(frozen != 2) : at::Tensor();
            const auto out = fused_add_layer_norm(
                norm, ours_x, delta.defined() ? std::optional(ours_delta) : std::nullopt,
                normed_dtype);
            ASSERT_EQ(out.normed.scalar_type(), normed_dtype);
            if (!delta.defined()) EXPECT_TRUE(out.sum.is_same(ours_x));
            auto loss = out.sum.sum() * 0;
            if (use_sum) loss = loss + (out.sum * up_sum).sum();
            if (use_normed) loss = loss + (out.normed.to(at::kFloat) * up_normed).sum();
            if (!loss.requires_grad()) continue;  // nothing wants a gradient
            loss.backward();

            const double tol = normed_dtype == at::kFloat ? 1e-5 : 5e-3;
            EXPECT_LT(relative_norm_difference(out.sum, ref_sum), 1e-6);
            EXPECT_LT(relative_norm_difference(out.normed, ref_normed), tol);
            if (frozen == 1) {
              EXPECT_FALSE(ours_x.grad().defined());
            } else {
              ASSERT_TRUE(ours_x.grad().defined());
              EXPECT_LT(relative_norm_difference(ours_x.grad(), ref_x.grad()), tol);
            }
            if (delta.defined() && frozen != 2) {
              ASSERT_TRUE(ours_delta.grad().defined());
              ASSERT_EQ(ours_delta.grad().scalar_type(), delta.scalar_type());
              EXPECT_LT(relative_norm_difference(ours_delta.grad(), ref_delta.grad()),
                        delta.scalar_type() == at::kBFloat16 ? 5e-3 : tol);
            } else if (delta.defined()) {
              EXPECT_FALSE(ours_delta.grad().defined());
            }
            if (frozen == 3 || !use_normed) {
              // Frozen, or no gradient reaches normed: the parameters get none.
              EXPECT_FALSE(norm->weight.grad().defined() &&
                           norm->weight.grad().abs().max().item<double>() > 0);
            } else {
              EXPECT_LT(relative_norm_difference(norm->weight.grad(), ref_w.grad()), tol);
              EXPECT_LT(relative_norm_difference(norm->bias.grad(), ref_b.grad()), tol);
            }
          }
}

}  // namespace
}  // namespace demix::ops
