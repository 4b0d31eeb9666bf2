#pragma once

// y = x W^T (+ b) for every linear layer of the model and its tied head, on the fastest path the
// tensors allow: bf16_linear under bf16 autocast on CUDA; on a CPU in fp32 where the execution
// policy picks OpenBLAS, an autograd node whose forward and backward GEMMs all go there
// (cpu_gemm.h); else at::linear, whose bias rides in the GEMM (addmm) for any input rank.

#include <ATen/core/Tensor.h>

namespace demix::ops {

// x (..., in), weight (out, in), bias (out) or undefined. Returns (..., out).
at::Tensor linear_map(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias = {});

}  // namespace demix::ops
