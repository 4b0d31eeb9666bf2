#pragma once

// The fp32 results of bf16 training's backward: weight gradients from bf16 operands and bias
// gradients summed from a bf16 gradient, written in fp32 directly (no bf16 result, no conversion
// pass). Shared by bf16_linear and expert_mlps.

#include <ATen/core/Tensor.h>

namespace demix::ops {

// a @ b from bf16 operands into fp32 (operands of another float dtype give theirs). CUDA has the
// mixed-dtype GEMM (aten::mm.dtype); elsewhere bf16 operands are widened first, which gives the
// same exact products and fp32 sums.
at::Tensor mm_into_fp32(const at::Tensor& a, const at::Tensor& b);
// The same into out, a (a.size(0), b.size(1)) tensor of that dtype (rows of a larger one, say).
void mm_into_fp32_out(at::Tensor& out, const at::Tensor& a, const at::Tensor& b);

// x (rows, cols) summed over rows (cols), bf16 into fp32, other dtypes in their own:
// column_sums_cuda.h's deterministic kernel for fp32 and bf16 on CUDA when the fused CUDA kernels
// (execution_policy.h) is on (and it is built), else ATen's sum.
at::Tensor column_sums(const at::Tensor& x);

}  // namespace demix::ops
