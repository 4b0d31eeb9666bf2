#pragma once

// LayerNorm over the last dimension, as torch::nn::LayerNorm computes it, with the weight and bias
// gradients from a kernel of our own when training in fp32 on CUDA (the residual stream stays
// fp32 under bf16 autocast). ATen sums those two column gradients with a kernel at about half
// the speed of its own input-gradient kernel, which reads as much; ours streams the rows once in
// 16-byte loads. The forward and the input gradient stay ATen's. Everywhere else (CPU, other
// dtypes, no gradient wanted, no CUDA kernels built) this is the module's own forward.

#include <torch/nn/modules/normalization.h>

#include <optional>

namespace demix::ops {

at::Tensor layer_norm(torch::nn::LayerNorm& norm, const at::Tensor& x);

// A block's residual add and the LayerNorm after it: sum = x + delta (x itself without delta)
// and normed = norm(sum). With the fused CUDA kernels on (execution_policy.h) a CUDA device (fp32
// x), one kernel each way (layer_norm_fused_cuda.h): the add, the normalisation and, under bf16
// autocast, normed written in bf16 (what the linear after it casts it to anyway); the backward adds
// the gradient that reaches sum directly (the residual stream's) into the LayerNorm's input
// gradient. Elsewhere x + delta and layer_norm above.
struct AddNorm {
  at::Tensor sum, normed;
};
AddNorm add_layer_norm(torch::nn::LayerNorm& norm, const at::Tensor& x,
                       const std::optional<at::Tensor>& delta);

// The fused path itself, on any device: CUDA runs its kernels, a CPU the same arithmetic in
// ATen (so that its autograd wiring is tested without a GPU). fp32 x and parameters, delta fp32
// or bf16; normed in normed_dtype.
AddNorm fused_add_layer_norm(torch::nn::LayerNorm& norm, const at::Tensor& x,
                             const std::optional<at::Tensor>& delta, at::ScalarType normed_dtype);

}  // namespace demix::ops
