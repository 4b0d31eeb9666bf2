#pragma once

// The CUDA kernel behind layer_norm's weight and bias gradients (layer_norm.h), for fp32
// (rows, cols) on the current device. A plain launcher on raw pointers, like
// target_logprobs_cuda.h, built only where CMake finds nvcc (DEMIX_CUDA_KERNELS).

#include <cuda_runtime_api.h>

#include <cstdint>

namespace demix::ops::cuda {

// Rows are summed in chunks of kLayerNormChunkRows, and the chunks are a grid dimension (at most
// 65535 of them): fewer rows than kLayerNormMaxRows.
constexpr int64_t kLayerNormChunkRows = 256;
constexpr int64_t kLayerNormMaxRows = 65535 * kLayerNormChunkRows;

// Floats of scratch space layer_norm_param_grads needs for `rows` x `cols`.
int64_t layer_norm_param_grads_workspace(int64_t rows, int64_t cols);

// grad_weight[c] = sum_r dy[r, c] (x[r, c] - mean[r]) rstd[r] and grad_bias[c] = sum_r dy[r, c],
// from the mean and reciprocal standard deviation of each row that the forward kept. Rows are
// summed in chunks into `workspace`, then the chunks in a fixed order: the same result every run.
// Returns an error message, or nullptr once the kernels are queued.
const char* layer_norm_param_grads(const float* x, const float* dy, const float* mean,
                                   const float* rstd, int64_t rows, int64_t cols, float* workspace,
                                   float* grad_weight, float* grad_bias, cudaStream_t stream);

}  // namespace demix::ops::cuda
