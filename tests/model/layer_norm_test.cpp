// layer_norm's CUDA path (its own weight and bias gradients) against autograd through
// at::layer_norm in float64 on the CPU.

#include "demix/model/layer_norm.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <vector>

#include "support/tensor_compare.h"

namespace demix::model {
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

}  // namespace
}  // namespace demix::model
