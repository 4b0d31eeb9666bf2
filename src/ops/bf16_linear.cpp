#include "demix/ops/bf16_linear.h"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <torch/autograd.h>

#include "demix/ops/mixed_precision.h"

namespace demix::ops {
namespace {

struct Bf16Linear : torch::autograd::Function<Bf16Linear> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
                            const at::Tensor& weight, const at::Tensor& bias) {
    const auto x2 = x.reshape({-1, x.size(-1)}).to(at::kBFloat16);
    const auto w = weight.to(at::kBFloat16);
    const auto y = at::addmm(bias.to(at::kBFloat16), x2, w.t());
    ctx->save_for_backward({x2, w});
    ctx->saved_data["x_is_fp32"] = x.scalar_type() == at::kFloat;
    auto shape = x.sizes().vec();
    shape.back() = weight.size(0);
    return y.view(shape);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& x2 = saved[0];
    const auto& w = saved[1];
    const auto gy = grads[0].reshape({-1, w.size(0)}).to(at::kBFloat16);
    at::Tensor gx, gw, gb;
    if (ctx->needs_input_grad(0)) {
      auto shape = grads[0].sizes().vec();
      shape.back() = w.size(1);
      // An fp32 x (a LayerNorm's output) gets its gradient from the GEMM in fp32: a bf16 result
      // would go through autograd's dtype conversion, a slow unvectorised kernel on CUDA.
      gx =
          (ctx->saved_data["x_is_fp32"].toBool() ? mm_into_fp32(gy, w) : at::mm(gy, w)).view(shape);
    }
    if (ctx->needs_input_grad(1)) gw = mm_into_fp32(gy.t(), x2);
    if (ctx->needs_input_grad(2)) gb = column_sums(gy);
    return {gx, gw, gb};
  }
};

}  // namespace

at::Tensor bf16_linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  return Bf16Linear::apply(x, weight, bias);
}

bool wants_bf16_linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  return x.is_cuda() && bias.defined() && at::GradMode::is_enabled() && weight.requires_grad() &&
         weight.scalar_type() == at::kFloat && at::autocast::is_autocast_enabled(at::kCUDA) &&
         at::autocast::get_autocast_dtype(at::kCUDA) == at::kBFloat16;
}

}  // namespace demix::ops
