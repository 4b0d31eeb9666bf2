#pragma once

// Column sums of a (rows, cols) matrix into fp32 on the current CUDA device: the bias gradients
// of bf16_linear and of the experts (expert_mlps.h), where ATen's sum over dim 0 of a bf16
// gradient with an fp32 result is slow. A plain launcher on raw pointers, like
// target_logprobs_cuda.h, built only where CMake finds nvcc (DEMIX_CUDA_KERNELS).

#include <cuda_runtime_api.h>

#include <cstdint>

namespace demix::ops::cuda {

enum class ElementType { kFloat, kBFloat16 };

// Rows are summed in chunks of 256 and the chunks are a grid dimension (at most 65535): fewer
// rows than this.
constexpr int64_t kMaxColumnSumRows = int64_t(65535) * 256;

// Floats of scratch space column_sums needs for `rows` x `cols`.
int64_t column_sums_workspace(int64_t rows, int64_t cols);

// out[c] = sum_r x[r, c] in fp32, x contiguous. Each chunk of 256 rows is summed into the
// workspace, then chunks of those sums, until one is left: a fixed order, the same result every
// run. Returns an error message, or nullptr once the kernels are queued.
const char* column_sums(const void* x, ElementType type, int64_t rows, int64_t cols,
                        float* workspace, float* out, cudaStream_t stream);

}  // namespace demix::ops::cuda
