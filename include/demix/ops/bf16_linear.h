#pragma once

// y = x W^T + b with bfloat16 operands and float32 master weights, for training under bf16
// autocast on a GPU. Autocast's linear casts W and b to bf16 in the forward, so their gradients
// come out of the GEMM in bf16 and autograd casts each back to fp32 (one slow conversion kernel
// per weight and bias every step: 9% of the GPT-3-small step's GPU time on an H200). Here the
// weight gradient GEMM writes fp32 directly (bf16 inputs, fp32 accumulate and output) and the
// bias gradient is summed into fp32: no conversion pass, and no rounding of the gradient to bf16.
// The input's gradient comes out of its GEMM in the input's dtype (fp32 for a LayerNorm output).

#include <ATen/core/Tensor.h>

namespace demix::ops {

// x (..., in) in any float dtype, weight (out, in) and bias (out) in fp32. Returns
// (..., out) in bf16; the gradients of weight and bias are fp32, that of x is x's dtype.
at::Tensor bf16_linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias);

// Whether a linear layer on these tensors should go through bf16_linear: training (grad mode,
// fp32 weight that wants a gradient, a bias) on a CUDA device under bf16 autocast.
bool wants_bf16_linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias);

}  // namespace demix::ops
