#pragma once

// The CUDA kernel behind gelu_tanh_backward_and_column_sums (gelu.h): an expert's GELU backward
// and its fc1 bias gradient in one pass over the (rows, d_ff) gradient, where ATen takes two
// (gelu_backward, then a sum over dim 0). A plain launcher on raw pointers, built only with
// DEMIX_CUDA_KERNELS.

#include <cuda_runtime_api.h>

#include <cstdint>

#include "demix/ops/cuda/column_sums_cuda.h"

namespace demix::ops::cuda {

// dpre = grad * gelu_tanh'(pre) in the tensors' type (computed in fp32, as ATen's gelu_backward
// does), and column_sums[c] = sum_r dpre[r, c] of the stored values, in fp32. grad, pre and dpre
// are contiguous (rows, cols) of one type; rows fewer than kMaxColumnSumRows; the workspace as
// column_sums_workspace(rows, cols). Returns an error message, or nullptr once queued.
const char* gelu_tanh_backward_and_column_sums(ElementType type, const void* grad, const void* pre,
                                               int64_t rows, int64_t cols, void* dpre,
                                               float* workspace, float* column_sums,
                                               cudaStream_t stream);

}  // namespace demix::ops::cuda
