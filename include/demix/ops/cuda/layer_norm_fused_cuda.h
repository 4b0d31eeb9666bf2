#pragma once

// The CUDA kernels of the fused path's LayerNorm (add_layer_norm in layer_norm.h, with
// the fused CUDA kernels on (execution_policy.h)),
// where ATen's forward, its input gradient, the residual add before it and the bf16 cast after
// it are separate passes. One warp per row; x, weight, bias, mean, rstd and sums are fp32; delta, y
// and dy are kFloat or kBFloat16 as `*_type` says. Each returns an error message, or nullptr once
// queued.

#include <cuda_runtime_api.h>

#include <cstdint>

#include "demix/ops/cuda/column_sums_cuda.h"  // ElementType, kMaxColumnSumRows

namespace demix::ops::cuda {

// s = x + delta (written to `sum` when delta is given; else s = x and `sum` is unused), then
// y = (s - mean) rstd weight + bias per row, with mean and rstd = 1 / sqrt(biased var + eps)
// written per row (fp32) for the backward.
const char* layer_norm_forward(const float* x, const void* delta, ElementType delta_type,
                               const float* weight, const float* bias, int64_t rows, int64_t cols,
                               float eps, float* sum, void* y, ElementType y_type, float* mean,
                               float* rstd, cudaStream_t stream);

// dx = rstd (g - mean_c(g) - xhat mean_c(g xhat)) + residual_grad, g = dy weight, xhat =
// (s - mean) rstd: the input gradient of the forward above (s its normalised input), plus the
// gradient that reached s directly (the residual stream's; nullptr for none).
const char* layer_norm_input_grad(const float* s, const void* dy, ElementType dy_type,
                                  const float* weight, const float* mean, const float* rstd,
                                  const float* residual_grad, int64_t rows, int64_t cols, float* dx,
                                  cudaStream_t stream);

// sums (2 cols): grad_weight = sum_r dy (s - mean) rstd, then grad_bias = sum_r dy, with dy of
// dy_type; deterministic, as column_sums. Rows fewer than kMaxColumnSumRows; the workspace as
// column_sums_workspace(rows, 2 cols).
const char* layer_norm_weight_bias_grads(const float* s, const void* dy, ElementType dy_type,
                                         const float* mean, const float* rstd, int64_t rows,
                                         int64_t cols, float* workspace, float* sums,
                                         cudaStream_t stream);

}  // namespace demix::ops::cuda
