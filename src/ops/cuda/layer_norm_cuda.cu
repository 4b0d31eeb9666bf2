#include <cstdint>

#include "demix/ops/cuda/layer_norm_cuda.h"
#include "kernel_launch.cuh"

namespace demix::ops::cuda {
namespace {

// A block covers 32 column slots (of 4 columns each where rows allow 16-byte loads) and a chunk
// of kLayerNormChunkRows rows; its 8 thread rows step through the chunk 8 rows apart, so each warp
// reads 32 consecutive slots of one row.
constexpr int kSlotsX = 32;
constexpr int kThreadRows = 8;

int64_t chunks_of(int64_t rows) { return (rows + kLayerNormChunkRows - 1) / kLayerNormChunkRows; }

template <int kCols>
struct alignas(4 * kCols) Floats {
  float v[kCols];
};

// partial (chunks, 2, cols): each chunk's sums of dy (x - mean) rstd and of dy, per column.
template <int kCols>
__global__ void __launch_bounds__(kSlotsX* kThreadRows)
    chunk_sums(const float* __restrict__ x, const float* __restrict__ dy,
               const float* __restrict__ mean, const float* __restrict__ rstd, int64_t rows,
               int64_t cols, float* __restrict__ partial) {
  const int64_t col = (int64_t(blockIdx.x) * kSlotsX + threadIdx.x) * kCols;
  const int64_t chunk = blockIdx.y;
  const int64_t end = min(rows, (chunk + 1) * kLayerNormChunkRows);
  float weight_sum[kCols] = {}, bias_sum[kCols] = {};
  if (col < cols) {
    for (int64_t r = chunk * kLayerNormChunkRows + threadIdx.y; r < end; r += kThreadRows) {
      const float m = mean[r], s = rstd[r];
      const auto xs = *reinterpret_cast<const Floats<kCols>*>(x + r * cols + col);
      const auto ds = *reinterpret_cast<const Floats<kCols>*>(dy + r * cols + col);
#pragma unroll
      for (int k = 0; k < kCols; ++k) {
        weight_sum[k] += ds.v[k] * ((xs.v[k] - m) * s);
        bias_sum[k] += ds.v[k];
      }
    }
  }
  __shared__ float weight_part[kThreadRows][kSlotsX * kCols],
      bias_part[kThreadRows][kSlotsX * kCols];
#pragma unroll
  for (int k = 0; k < kCols; ++k) {
    weight_part[threadIdx.y][threadIdx.x * kCols + k] = weight_sum[k];
    bias_part[threadIdx.y][threadIdx.x * kCols + k] = bias_sum[k];
  }
  __syncthreads();
  if (threadIdx.y != 0 || col >= cols) return;
  float* out = partial + chunk * 2 * cols;
#pragma unroll
  for (int k = 0; k < kCols; ++k) {
    float w = 0, b = 0;
    for (int t = 0; t < kThreadRows; ++t) {
      w += weight_part[t][threadIdx.x * kCols + k];
      b += bias_part[t][threadIdx.x * kCols + k];
    }
    out[col + k] = w;
    out[cols + col + k] = b;
  }
}

// One thread per output (2 * cols of them): the chunks' partial sums in chunk order.
__global__ void sum_chunks(const float* __restrict__ partial, int64_t chunks, int64_t cols,
                           float* __restrict__ grad_weight, float* __restrict__ grad_bias) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= 2 * cols) return;
  float total = 0;
  for (int64_t chunk = 0; chunk < chunks; ++chunk) total += partial[chunk * 2 * cols + i];
  if (i < cols)
    grad_weight[i] = total;
  else
    grad_bias[i - cols] = total;
}

}  // namespace

int64_t layer_norm_param_grads_workspace(int64_t rows, int64_t cols) {
  return chunks_of(rows) * 2 * cols;
}

const char* layer_norm_param_grads(const float* x, const float* dy, const float* mean,
                                   const float* rstd, int64_t rows, int64_t cols, float* workspace,
                                   float* grad_weight, float* grad_bias, cudaStream_t stream) {
  if (cols == 0) return nullptr;
  const int64_t chunks = chunks_of(rows);
  if (chunks > 0) {
    const dim3 threads(kSlotsX, kThreadRows);
    const bool packed = cols % 4 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0 &&
                        reinterpret_cast<uintptr_t>(dy) % 16 == 0;
    const int64_t per_block = kSlotsX * (packed ? 4 : 1);
    const dim3 blocks(unsigned((cols + per_block - 1) / per_block), unsigned(chunks));
    if (packed)
      detail::launch(chunk_sums<4>, blocks, threads, stream, x, dy, mean, rstd, rows, cols,
                     workspace);
    else
      detail::launch(chunk_sums<1>, blocks, threads, stream, x, dy, mean, rstd, rows, cols,
                     workspace);
  }
  constexpr int kThreads = 256;
  detail::launch(sum_chunks, unsigned((2 * cols + kThreads - 1) / kThreads), kThreads, stream,
                 workspace, chunks, cols, grad_weight, grad_bias);
  return detail::last_error();
}

}  // namespace demix::ops::cuda
