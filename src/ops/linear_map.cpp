#include "demix/ops/linear_map.h"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <torch/autograd.h>

#include "demix/ops/bf16_linear.h"
#include "demix/ops/execution_policy.h"

namespace demix::ops {
namespace {

// ATen's linear autograd runs its backward GEMMs through MKL: this one sends them to gemm(). (The
// bias is optional: autograd cannot take an undefined tensor as an input.)
struct CpuLinear : torch::autograd::Function<CpuLinear> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
                            const at::Tensor& weight, const std::optional<at::Tensor>& bias) {
    const auto x2 = x.reshape({-1, x.size(-1)});
    ctx->save_for_backward({x2, weight});
    ctx->saved_data["has_bias"] = bias.has_value();  // needs_input_grad counts tensor inputs only
    auto shape = x.sizes().vec();
    shape.back() = weight.size(0);
    return gemm(x2, weight.t(), bias.value_or(at::Tensor())).view(shape);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto &x2 = saved[0], &weight = saved[1];
    const auto gy = grads[0].reshape({-1, weight.size(0)});
    at::Tensor gx, gw, gb;
    if (ctx->needs_input_grad(0)) {
      auto shape = grads[0].sizes().vec();
      shape.back() = weight.size(1);
      gx = gemm(gy, weight).view(shape);
    }
    if (ctx->needs_input_grad(1)) gw = gemm(gy.t(), x2);
    if (ctx->saved_data["has_bias"].toBool() && ctx->needs_input_grad(2)) gb = gy.sum(0);
    return {gx, gw, gb};
  }
};

bool wants_cpu_linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  return execution_policy().cpu_gemm == CpuGemm::kOpenBlas && x.is_cpu() &&
         x.scalar_type() == at::kFloat && weight.scalar_type() == at::kFloat &&
         (!bias.defined() || bias.scalar_type() == at::kFloat) &&
         !at::autocast::is_autocast_enabled(at::kCPU);
}

}  // namespace

at::Tensor linear_map(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  if (wants_bf16_linear(x, weight, bias)) return bf16_linear(x, weight, bias);
  const auto optional_bias = bias.defined() ? std::optional<at::Tensor>(bias) : std::nullopt;
  if (wants_cpu_linear(x, weight, bias)) return CpuLinear::apply(x, weight, optional_bias);
  return at::linear(x, weight, optional_bias);
}

}  // namespace demix::ops
