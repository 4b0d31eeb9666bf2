#include "demix/model/layer_norm.h"

#include <ATen/ATen.h>
#include <torch/autograd.h>

#ifdef DEMIX_CUDA_KERNELS
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "demix/model/layer_norm_cuda.h"
#endif

namespace demix::model {
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

}  // namespace demix::model
