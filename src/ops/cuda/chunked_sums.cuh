#pragma once

// The column-sum machinery shared by demix's CUDA kernels (column_sums_cuda.cu, gelu_cuda.cu): a
// first pass sums each chunk of rows of some per-element terms, and chunks of those partial sums
// are then summed again until one is left. Deterministic: the same order every run.

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

#include "element_cast.cuh"
#include "kernel_launch.cuh"

namespace demix::ops::cuda::detail {

constexpr int64_t kChunkRows = 256;
// A block covers kSlots column slots (of kVec columns each) and one chunk of rows; its
// kThreadRows thread rows step through the chunk kThreadRows rows apart, so each warp reads
// consecutive slots of one row.
constexpr int kSlots = 32;
constexpr int kThreadRows = 8;

inline int64_t chunks_of(int64_t rows) { return (rows + kChunkRows - 1) / kChunkRows; }

// kVec elements of T, loaded or stored at once (16 bytes when kVec * sizeof(T) == 16).
template <class T, int kVec>
struct alignas(sizeof(T) * kVec) Pack {
  T v[kVec];
};

template <int kVec, class T>
__device__ __forceinline__ Pack<T, kVec> load(const T* p) {
  return *reinterpret_cast<const Pack<T, kVec>*>(p);
}

// The columns of a (rows, cols) matrix in T, summed as they are.
template <class T>
struct MatrixTerms {
  static constexpr int kOuts = 1;
  const T* x;
  int64_t cols;
  template <int kVec>
  __device__ void add(int64_t r, int64_t col, float (&sums)[kOuts][kVec]) const {
    const auto p = load<kVec>(x + r * cols + col);
#pragma unroll
    for (int k = 0; k < kVec; ++k) sums[0][k] += to_float(p.v[k]);
  }
};

// partial (chunks, Terms::kOuts * cols): for each chunk of rows, the sums per column of each of
// the terms `terms.add` adds for row r and columns col .. col + kVec - 1 (which it may also
// write out, as a fused elementwise pass does).
template <int kVec, class Terms>
__global__ void __launch_bounds__(kSlots* kThreadRows)
    chunk_sums(Terms terms, int64_t rows, int64_t cols, float* __restrict__ partial) {
  constexpr int kOuts = Terms::kOuts;
  const int64_t col = (int64_t(blockIdx.x) * kSlots + threadIdx.x) * kVec;
  const int64_t chunk = blockIdx.y;
  const int64_t end = min(rows, (chunk + 1) * kChunkRows);
  float sums[kOuts][kVec] = {};
  if (col < cols)
    for (int64_t r = chunk * kChunkRows + threadIdx.y; r < end; r += kThreadRows)
      terms.template add<kVec>(r, col, sums);
  __shared__ float part[kOuts][kThreadRows][kSlots * kVec];
#pragma unroll
  for (int o = 0; o < kOuts; ++o)
#pragma unroll
    for (int k = 0; k < kVec; ++k) part[o][threadIdx.y][threadIdx.x * kVec + k] = sums[o][k];
  __syncthreads();
  if (threadIdx.y != 0 || col >= cols) return;
#pragma unroll
  for (int o = 0; o < kOuts; ++o)
#pragma unroll
    for (int k = 0; k < kVec; ++k) {
      float total = 0;
      for (int t = 0; t < kThreadRows; ++t) total += part[o][t][threadIdx.x * kVec + k];
      partial[(chunk * kOuts + o) * cols + col + k] = total;
    }
}

template <int kVec, class Terms>
void launch_chunk_sums(const Terms& terms, int64_t rows, int64_t cols, float* partial,
                       cudaStream_t stream) {
  const int64_t per_block = int64_t(kSlots) * kVec;
  const dim3 blocks(unsigned((cols + per_block - 1) / per_block), unsigned(chunks_of(rows)));
  launch(chunk_sums<kVec, Terms>, blocks, dim3(kSlots, kThreadRows), stream, terms, rows, cols,
         partial);
}

// Floats of workspace for the partial sums of `rows` rows of `width` columns: every level with
// more than one chunk (the last level is written straight to the output).
inline int64_t workspace_floats(int64_t rows, int64_t width) {
  int64_t total = 0;
  for (int64_t chunks = chunks_of(rows); chunks > 1; chunks = chunks_of(chunks))
    total += chunks * width;
  return total;
}

// out (Terms::kOuts * cols) = the column sums of terms over `rows` rows: the first pass with
// kVec columns per thread, then chunks of partial sums (fp32, 4 per thread where they allow)
// until one is left. 0 rows give zeros.
template <int kVec, class Terms>
void column_sums_of(const Terms& terms, int64_t rows, int64_t cols, float* workspace, float* out,
                    cudaStream_t stream) {
  const int64_t width = Terms::kOuts * cols;
  if (width == 0) return;
  if (rows == 0) {
    cudaMemsetAsync(out, 0, size_t(width) * sizeof(float), stream);
    return;
  }
  int64_t chunks = chunks_of(rows);
  float* level = chunks == 1 ? out : workspace;
  launch_chunk_sums<kVec>(terms, rows, cols, level, stream);
  while (chunks > 1) {
    const int64_t next = chunks_of(chunks);
    float* sums = next == 1 ? out : level + chunks * width;
    const MatrixTerms<float> partial{level, width};
    if (width % 4 == 0)  // level starts 16-byte aligned when the workspace does
      launch_chunk_sums<4>(partial, chunks, width, sums, stream);
    else
      launch_chunk_sums<1>(partial, chunks, width, sums, stream);
    level = sums;
    chunks = next;
  }
}

inline bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace demix::ops::cuda::detail
