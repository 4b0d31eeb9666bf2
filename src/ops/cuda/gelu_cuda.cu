#include "chunked_sums.cuh"
#include "demix/ops/cuda/gelu_cuda.h"

namespace demix::ops::cuda {
namespace {

using detail::from_float;
using detail::load;
using detail::Pack;
using detail::to_float;

// gelu_tanh'(x), written as ATen's gelu_backward (approximate="tanh") writes it.
__device__ __forceinline__ float gelu_tanh_derivative(float x) {
  constexpr float kBeta = 0.7978845608028654f;  // sqrt(2 / pi)
  constexpr float kKappa = 0.044715f;
  const float x_sq = x * x;
  const float tanh_inner = tanhf(kBeta * (x + kKappa * x_sq * x));
  const float left_derivative = 0.5f * (1.0f + tanh_inner);
  const float right_derivative =
      0.5f * x * (1.0f - tanh_inner * tanh_inner) * kBeta * (1.0f + 3.0f * kKappa * x_sq);
  return left_derivative + right_derivative;
}

// Writes dpre for row r, columns col .. col + kVec - 1, and adds it to the column sums.
template <class T>
struct GeluBackwardTerms {
  static constexpr int kOuts = 1;
  const T* grad;
  const T* pre;
  T* dpre;
  int64_t cols;
  template <int kVec>
  __device__ void add(int64_t r, int64_t col, float (&sums)[kOuts][kVec]) const {
    const int64_t at = r * cols + col;
    const auto g = load<kVec>(grad + at), p = load<kVec>(pre + at);
    Pack<T, kVec> d;
#pragma unroll
    for (int k = 0; k < kVec; ++k) {
      d.v[k] = from_float<T>(to_float(g.v[k]) * gelu_tanh_derivative(to_float(p.v[k])));
      sums[0][k] += to_float(d.v[k]);
    }
    *reinterpret_cast<Pack<T, kVec>*>(dpre + at) = d;
  }
};

template <class T, int kPacked>
void run(const void* grad, const void* pre, int64_t rows, int64_t cols, void* dpre,
         float* workspace, float* column_sums, cudaStream_t stream) {
  const GeluBackwardTerms<T> terms{static_cast<const T*>(grad), static_cast<const T*>(pre),
                                   static_cast<T*>(dpre), cols};
  const bool packed = cols % kPacked == 0 && detail::aligned16(grad) && detail::aligned16(pre) &&
                      detail::aligned16(dpre);
  if (packed)
    detail::column_sums_of<kPacked>(terms, rows, cols, workspace, column_sums, stream);
  else
    detail::column_sums_of<1>(terms, rows, cols, workspace, column_sums, stream);
}

}  // namespace

const char* gelu_tanh_backward_and_column_sums(ElementType type, const void* grad, const void* pre,
                                               int64_t rows, int64_t cols, void* dpre,
                                               float* workspace, float* column_sums,
                                               cudaStream_t stream) {
  if (type == ElementType::kFloat)
    run<float, 4>(grad, pre, rows, cols, dpre, workspace, column_sums, stream);
  else
    run<__nv_bfloat16, 8>(grad, pre, rows, cols, dpre, workspace, column_sums, stream);
  return detail::last_error();
}

}  // namespace demix::ops::cuda
