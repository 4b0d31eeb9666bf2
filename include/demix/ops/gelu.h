#pragma once

// GELU with the tanh approximation (GPT-2's MLP activation). ATen's CPU kernel for it ran at a
// third of the speed of its own tanh here and took 5% of the ~10M-parameter config's step
// (forward and backward); this one is a single vectorised pass each way.

#include <ATen/core/Tensor.h>

#include <utility>

namespace demix::ops {

// x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), differentiable. Contiguous fp32 CPU tensors on a
// CPU with AVX2+FMA or AVX-512 take the kernel in gelu.cpp (computed as x sigmoid(2u), with a
// polynomial exp: within a few fp32 ulps of the closed form); anything else takes
// at::gelu(x, "tanh").
at::Tensor gelu_tanh(const at::Tensor& x);
// grad * gelu_tanh'(x), without autograd (for callers with a backward of their own).
at::Tensor gelu_tanh_backward(const at::Tensor& grad, const at::Tensor& x);
// (grad * gelu_tanh'(x), its sum over rows in fp32) for matrices grad and x of one dtype: the
// input gradient of an MLP's GELU and the bias gradient of the linear before it. One pass on
// CUDA where the fused CUDA kernels (execution_policy.h) is on (gelu_cuda.h), else
// gelu_tanh_backward then column_sums.
std::pair<at::Tensor, at::Tensor> gelu_tanh_backward_and_column_sums(const at::Tensor& grad,
                                                                     const at::Tensor& x);

}  // namespace demix::ops
