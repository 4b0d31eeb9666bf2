#include "demix/ops/layer_norm.h"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <torch/autograd.h>

#include "demix/ops/execution_policy.h"

#ifdef DEMIX_CUDA_KERNELS
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "demix/ops/cuda/layer_norm_cuda.h"
#include "demix/ops/cuda/layer_norm_fused_cuda.h"
#endif

namespace demix::ops {
namespace {

#ifdef DEMIX_CUDA_KERNELS
struct CudaLayerNorm : torch::autograd::Function<CudaLayerNorm> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
                            const at::Tensor& weight, const at::Tensor& bias, double eps) {
    auto [out, mean, rstd] = at::native_layer_norm(x, {x.size(-1)}, weight, bias, eps);
    ctx->save_for_backward({x, weight, bias, mean, rstd});
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto &x = saved[0], &weight = saved[1], &bias = saved[2], &mean = saved[3],
               &rstd = saved[4];
    const auto dy = grads[0].to(x.scalar_type()).contiguous();
    at::Tensor dx, grad_weight, grad_bias;
    if (ctx->needs_input_grad(0))
      dx = std::get<0>(at::native_layer_norm_backward(dy, x, {x.size(-1)}, mean, rstd, weight, bias,
                                                      {true, false, false}));
    if (ctx->needs_input_grad(1) || ctx->needs_input_grad(2)) {
      const int64_t cols = x.size(-1), rows = x.numel() / cols;
      const c10::cuda::CUDAGuard device(x.device());
      auto workspace = at::empty({cuda::layer_norm_param_grads_workspace(rows, cols)}, x.options());
      grad_weight = at::empty_like(weight);
      grad_bias = at::empty_like(bias);
      const char* error = cuda::layer_norm_param_grads(
          x.const_data_ptr<float>(), dy.const_data_ptr<float>(), mean.const_data_ptr<float>(),
          rstd.const_data_ptr<float>(), rows, cols, workspace.mutable_data_ptr<float>(),
          grad_weight.mutable_data_ptr<float>(), grad_bias.mutable_data_ptr<float>(),
          c10::cuda::getCurrentCUDAStream());
      TORCH_CHECK(error == nullptr, "layer_norm: CUDA kernel launch failed: ", error);
    }
    return {dx, grad_weight, grad_bias, at::Tensor()};
  }
};

#endif

// The fused path's three steps (layer_norm_fused_cuda.h): its kernels on CUDA, and on a CPU the
// same arithmetic in ATen, so that the autograd node around them is tested everywhere. stats
// (2, rows): mean, then rstd; s: the normalised input (sum, or x); all fp32 but delta, normed, dy.
#ifdef DEMIX_CUDA_KERNELS
cuda::ElementType element_type(const at::Tensor& t) {
  return t.scalar_type() == at::kBFloat16 ? cuda::ElementType::kBFloat16
                                          : cuda::ElementType::kFloat;
}

void check_launch(const char* error) {
  TORCH_CHECK(error == nullptr, "add_layer_norm: CUDA kernel launch failed: ", error);
}
#endif

void normalize(const at::Tensor& x, const std::optional<at::Tensor>& delta,
               const at::Tensor& weight, const at::Tensor& bias, double eps, at::Tensor& sum,
               at::Tensor& normed, at::Tensor& stats) {
  const int64_t cols = x.size(-1), rows = x.numel() / cols;
#ifdef DEMIX_CUDA_KERNELS
  if (x.is_cuda()) {
    check_launch(cuda::layer_norm_forward(
        x.const_data_ptr<float>(), delta ? delta->const_data_ptr() : nullptr,
        delta ? element_type(*delta) : cuda::ElementType::kFloat, weight.const_data_ptr<float>(),
        bias.const_data_ptr<float>(), rows, cols, float(eps),
        delta ? sum.mutable_data_ptr<float>() : nullptr, normed.mutable_data_ptr(),
        element_type(normed), stats[0].mutable_data_ptr<float>(),
        stats[1].mutable_data_ptr<float>(), c10::cuda::getCurrentCUDAStream()));
    return;
  }
#endif
  if (delta) sum.copy_(x + *delta);
  const auto s = sum.view({rows, cols});
  const auto mean = s.mean(1, /*keepdim=*/true);
  const auto rstd = (s.var(1, /*unbiased=*/false, /*keepdim=*/true) + eps).rsqrt();
  normed.view({rows, cols}).copy_((s - mean) * rstd * weight + bias);
  stats[0].copy_(mean.view(-1));
  stats[1].copy_(rstd.view(-1));
}

// dx = the LayerNorm's input gradient under dy, plus residual (undefined: none).
void normalize_input_grad(const at::Tensor& s, const at::Tensor& dy, const at::Tensor& weight,
                          const at::Tensor& stats, const at::Tensor& residual, at::Tensor& dx) {
  const int64_t cols = s.size(-1), rows = s.numel() / cols;
#ifdef DEMIX_CUDA_KERNELS
  if (s.is_cuda()) {
    check_launch(cuda::layer_norm_input_grad(
        s.const_data_ptr<float>(), dy.const_data_ptr(), element_type(dy),
        weight.const_data_ptr<float>(), stats[0].const_data_ptr<float>(),
        stats[1].const_data_ptr<float>(),
        residual.defined() ? residual.const_data_ptr<float>() : nullptr, rows, cols,
        dx.mutable_data_ptr<float>(), c10::cuda::getCurrentCUDAStream()));
    return;
  }
#endif
  const auto mean = stats[0].view({rows, 1}), rstd = stats[1].view({rows, 1});
  const auto xhat = (s.view({rows, cols}) - mean) * rstd;
  const auto g = dy.view({rows, cols}).to(at::kFloat) * weight;
  auto out = rstd * (g - g.mean(1, true) - xhat * (g * xhat).mean(1, true));
  if (residual.defined()) out += residual.view({rows, cols});
  dx.view({rows, cols}).copy_(out);
}

// sums (2, cols): the weight's gradient, then the bias's.
void normalize_param_grads(const at::Tensor& s, const at::Tensor& dy, const at::Tensor& stats,
                           at::Tensor& sums) {
  const int64_t cols = s.size(-1), rows = s.numel() / cols;
#ifdef DEMIX_CUDA_KERNELS
  if (s.is_cuda()) {
    auto workspace = at::empty({cuda::column_sums_workspace(rows, 2 * cols)}, s.options());
    check_launch(cuda::layer_norm_weight_bias_grads(
        s.const_data_ptr<float>(), dy.const_data_ptr(), element_type(dy),
        stats[0].const_data_ptr<float>(), stats[1].const_data_ptr<float>(), rows, cols,
        workspace.mutable_data_ptr<float>(), sums.mutable_data_ptr<float>(),
        c10::cuda::getCurrentCUDAStream()));
    return;
  }
#endif
  const auto xhat = (s.view({rows, cols}) - stats[0].view({rows, 1})) * stats[1].view({rows, 1});
  const auto g = dy.view({rows, cols}).to(at::kFloat);
  sums[0].copy_((g * xhat).sum(0));
  sums[1].copy_(g.sum(0));
}

// Inputs: x, delta (when given), weight, bias, then eps and normed's dtype; outputs: sum (when
// delta is given), normed. Saved: the normalised input s (sum, or x), weight and the stats.
struct FusedAddLayerNorm : torch::autograd::Function<FusedAddLayerNorm> {
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx,
                                                const at::Tensor& x,
                                                const std::optional<at::Tensor>& delta,
                                                const at::Tensor& weight, const at::Tensor& bias,
                                                double eps, at::ScalarType normed_dtype) {
    ctx->set_materialize_grads(false);  // an unused sum or normed sends no gradient
    const int64_t cols = x.size(-1), rows = x.numel() / cols;
    const c10::OptionalDeviceGuard device(x.device());
    auto sum = delta ? at::empty_like(x) : x;
    auto normed = at::empty(x.sizes(), x.options().dtype(normed_dtype));
    auto stats = at::empty({2, rows}, x.options());
    normalize(x, delta, weight, bias, eps, sum, normed, stats);
    ctx->save_for_backward({sum, weight, stats});
    ctx->saved_data["delta_dtype"] = delta ? delta->scalar_type() : at::kFloat;
    ctx->saved_data["has_delta"] = delta.has_value();
    if (delta) return {sum, normed};
    return {normed};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto &s = saved[0], &weight = saved[1], &stats = saved[2];
    const bool has_delta = ctx->saved_data["has_delta"].toBool();
    const auto& g_sum = has_delta ? grads[0] : at::Tensor();
    const auto& g_normed = grads[has_delta ? 1 : 0];
    // needs_input_grad counts the tensors given: x, delta (if any), weight, bias.
    const size_t weight_input = has_delta ? 2 : 1;
    const bool want_x = ctx->needs_input_grad(0) || (has_delta && ctx->needs_input_grad(1));
    const bool want_params =
        ctx->needs_input_grad(weight_input) || ctx->needs_input_grad(weight_input + 1);
    const c10::OptionalDeviceGuard device(s.device());
    at::Tensor dx = want_x ? g_sum : at::Tensor(), grad_weight, grad_bias;
    if (g_normed.defined()) {
      const auto dy = g_normed.contiguous();
      if (want_x) {
        const auto residual = g_sum.defined() ? g_sum.to(at::kFloat).contiguous() : at::Tensor();
        dx = at::empty_like(s);
        normalize_input_grad(s, dy, weight, stats, residual, dx);
      }
      if (want_params) {
        auto sums = at::empty({2, s.size(-1)}, s.options());
        normalize_param_grads(s, dy, stats, sums);
        grad_weight = sums[0];
        grad_bias = sums[1];
      }
    }
    // One slot per forward argument: x, delta, weight, bias, eps, normed_dtype.
    at::Tensor grad_delta;
    if (has_delta && dx.defined() && ctx->needs_input_grad(1))
      grad_delta = dx.to(ctx->saved_data["delta_dtype"].toScalarType());
    return {ctx->needs_input_grad(0) ? dx : at::Tensor(),
            grad_delta,
            grad_weight,
            grad_bias,
            at::Tensor(),
            at::Tensor()};
  }
};

// What the fused node takes: fp32 x (contiguous, non-empty rows), fp32 weight and bias of x's
// width, and a delta like x in fp32 or bf16; all on x's device.
bool fused_inputs_fit(torch::nn::LayerNorm& norm, const at::Tensor& x,
                      const std::optional<at::Tensor>& delta) {
  const auto& weight = norm->weight;
  const auto& bias = norm->bias;
  const auto& shape = norm->options.normalized_shape();
  const bool x_fits = x.scalar_type() == at::kFloat && x.is_contiguous() && x.dim() >= 1 &&
                      x.size(-1) > 0 && shape.size() == 1 && shape[0] == x.size(-1);
  const bool params_fit = weight.defined() && bias.defined() &&
                          weight.scalar_type() == at::kFloat && bias.scalar_type() == at::kFloat &&
                          weight.device() == x.device() && bias.device() == x.device() &&
                          weight.is_contiguous() && bias.is_contiguous();
  const bool delta_fits =
      !delta ||
      (delta->sizes() == x.sizes() && delta->device() == x.device() && delta->is_contiguous() &&
       (delta->scalar_type() == at::kFloat || delta->scalar_type() == at::kBFloat16));
  return x_fits && params_fit && delta_fits;
}

}  // namespace

at::Tensor layer_norm(torch::nn::LayerNorm& norm, const at::Tensor& x) {
#ifdef DEMIX_CUDA_KERNELS
  const auto& weight = norm->weight;
  const auto& bias = norm->bias;
  const auto& shape = norm->options.normalized_shape();
  const bool fits = x.is_cuda() && x.scalar_type() == at::kFloat && x.is_contiguous() &&
                    x.dim() >= 1 && x.size(-1) > 0 && shape.size() == 1 && shape[0] == x.size(-1) &&
                    weight.defined() && bias.defined() && weight.scalar_type() == at::kFloat &&
                    bias.scalar_type() == at::kFloat && at::GradMode::is_enabled() &&
                    (weight.requires_grad() || bias.requires_grad()) &&
                    x.numel() / x.size(-1) < cuda::kLayerNormMaxRows;
  if (fits) return CudaLayerNorm::apply(x, weight, bias, norm->options.eps());
#endif
  return norm->forward(x);
}

AddNorm fused_add_layer_norm(torch::nn::LayerNorm& norm, const at::Tensor& x,
                             const std::optional<at::Tensor>& delta, at::ScalarType normed_dtype) {
  TORCH_CHECK(fused_inputs_fit(norm, x, delta),
              "fused_add_layer_norm: expected fp32 x and parameters and an fp32 or bf16 delta of "
              "x's shape, contiguous, on one device");
  const auto out = FusedAddLayerNorm::apply(x, delta, norm->weight, norm->bias, norm->options.eps(),
                                            normed_dtype);
  if (delta) return {out[0], out[1]};
  return {x, out[0]};
}

AddNorm add_layer_norm(torch::nn::LayerNorm& norm, const at::Tensor& x,
                       const std::optional<at::Tensor>& delta) {
#ifdef DEMIX_CUDA_KERNELS
  if (execution_policy().fused_cuda_kernels && x.is_cuda() && fused_inputs_fit(norm, x, delta) &&
      x.numel() / x.size(-1) < cuda::kMaxColumnSumRows) {
    const bool bf16 = at::autocast::is_autocast_enabled(at::kCUDA) &&
                      at::autocast::get_autocast_dtype(at::kCUDA) == at::kBFloat16;
    return fused_add_layer_norm(norm, x, delta, bf16 ? at::kBFloat16 : at::kFloat);
  }
#endif
  const auto sum = delta ? x + *delta : x;
  return {sum, layer_norm(norm, sum)};
}

}  // namespace demix::ops
