#include "chunked_sums.cuh"
#include "demix/ops/cuda/layer_norm_fused_cuda.h"

namespace demix::ops::cuda {
namespace {

using detail::from_float;
using detail::load;
using detail::to_float;

constexpr int kWarpsPerBlock = 8;  // rows per block, one warp each

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// Lane l of a row's warp handles columns l, l + 32, ...: coalesced, and a lane reads back only
// what it wrote itself (the sum), so no fence is needed between the passes.
template <class DeltaT, class OutT>
__global__ void __launch_bounds__(32 * kWarpsPerBlock)
    forward_rows(const float* __restrict__ x, const DeltaT* __restrict__ delta,
                 const float* __restrict__ weight, const float* __restrict__ bias, int64_t rows,
                 int64_t cols, float eps, float* __restrict__ sum, OutT* __restrict__ y,
                 float* __restrict__ mean_out, float* __restrict__ rstd_out) {
  const int64_t row = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.y;
  if (row >= rows) return;
  const int lane = threadIdx.x;
  const int64_t at = row * cols;
  const float* s = x + at;
  float total = 0;
  if (delta != nullptr) {
    for (int64_t c = lane; c < cols; c += 32) {
      const float v = x[at + c] + to_float(delta[at + c]);
      sum[at + c] = v;
      total += v;
    }
    s = sum + at;
  } else {
    for (int64_t c = lane; c < cols; c += 32) total += s[c];
  }
  const float mean = warp_sum(total) / float(cols);
  float squares = 0;
  for (int64_t c = lane; c < cols; c += 32) {
    const float d = s[c] - mean;
    squares += d * d;
  }
  const float rstd = rsqrtf(warp_sum(squares) / float(cols) + eps);
  for (int64_t c = lane; c < cols; c += 32)
    y[at + c] = from_float<OutT>((s[c] - mean) * rstd * weight[c] + bias[c]);
  if (lane == 0) {
    mean_out[row] = mean;
    rstd_out[row] = rstd;
  }
}

template <class GradT>
__global__ void __launch_bounds__(32 * kWarpsPerBlock)
    input_grad_rows(const float* __restrict__ s, const GradT* __restrict__ dy,
                    const float* __restrict__ weight, const float* __restrict__ mean,
                    const float* __restrict__ rstd, const float* __restrict__ residual_grad,
                    int64_t rows, int64_t cols, float* __restrict__ dx) {
  const int64_t row = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.y;
  if (row >= rows) return;
  const int lane = threadIdx.x;
  const int64_t at = row * cols;
  const float m = mean[row], r = rstd[row];
  float g_sum = 0, g_xhat_sum = 0;
  for (int64_t c = lane; c < cols; c += 32) {
    const float g = to_float(dy[at + c]) * weight[c];
    g_sum += g;
    g_xhat_sum += g * ((s[at + c] - m) * r);
  }
  const float g_mean = warp_sum(g_sum) / float(cols);
  const float g_xhat_mean = warp_sum(g_xhat_sum) / float(cols);
  for (int64_t c = lane; c < cols; c += 32) {
    const float g = to_float(dy[at + c]) * weight[c];
    float v = r * (g - g_mean - (s[at + c] - m) * r * g_xhat_mean);
    if (residual_grad != nullptr) v += residual_grad[at + c];
    dx[at + c] = v;
  }
}

// Row r, columns col..col + kVec - 1: dy (s - mean) rstd into sums[0], dy into sums[1].
template <class GradT>
struct WeightBiasTerms {
  static constexpr int kOuts = 2;
  const float* s;
  const GradT* dy;
  const float* mean;
  const float* rstd;
  int64_t cols;
  template <int kVec>
  __device__ void add(int64_t r, int64_t col, float (&sums)[kOuts][kVec]) const {
    const float m = mean[r], rs = rstd[r];
    const auto xs = load<kVec>(s + r * cols + col);
    const auto ds = load<kVec>(dy + r * cols + col);
#pragma unroll
    for (int k = 0; k < kVec; ++k) {
      const float d = to_float(ds.v[k]);
      sums[0][k] += d * ((xs.v[k] - m) * rs);
      sums[1][k] += d;
    }
  }
};

dim3 row_blocks(int64_t rows) {
  return dim3(unsigned((rows + kWarpsPerBlock - 1) / kWarpsPerBlock));
}
const dim3 kRowThreads(32, kWarpsPerBlock);

template <class DeltaT, class OutT>
void forward_as(const float* x, const void* delta, const float* weight, const float* bias,
                int64_t rows, int64_t cols, float eps, float* sum, void* y, float* mean,
                float* rstd, cudaStream_t stream) {
  detail::launch(forward_rows<DeltaT, OutT>, row_blocks(rows), kRowThreads, stream, x,
                 static_cast<const DeltaT*>(delta), weight, bias, rows, cols, eps, sum,
                 static_cast<OutT*>(y), mean, rstd);
}

template <class OutT>
void forward_into(const float* x, const void* delta, ElementType delta_type, const float* weight,
                  const float* bias, int64_t rows, int64_t cols, float eps, float* sum, void* y,
                  float* mean, float* rstd, cudaStream_t stream) {
  if (delta_type == ElementType::kBFloat16)
    forward_as<__nv_bfloat16, OutT>(x, delta, weight, bias, rows, cols, eps, sum, y, mean, rstd,
                                    stream);
  else
    forward_as<float, OutT>(x, delta, weight, bias, rows, cols, eps, sum, y, mean, rstd, stream);
}

}  // namespace

const char* layer_norm_forward(const float* x, const void* delta, ElementType delta_type,
                               const float* weight, const float* bias, int64_t rows, int64_t cols,
                               float eps, float* sum, void* y, ElementType y_type, float* mean,
                               float* rstd, cudaStream_t stream) {
  if (rows == 0) return nullptr;
  if (y_type == ElementType::kBFloat16)
    forward_into<__nv_bfloat16>(x, delta, delta_type, weight, bias, rows, cols, eps, sum, y, mean,
                                rstd, stream);
  else
    forward_into<float>(x, delta, delta_type, weight, bias, rows, cols, eps, sum, y, mean, rstd,
                        stream);
  return detail::last_error();
}

const char* layer_norm_input_grad(const float* s, const void* dy, ElementType dy_type,
                                  const float* weight, const float* mean, const float* rstd,
                                  const float* residual_grad, int64_t rows, int64_t cols, float* dx,
                                  cudaStream_t stream) {
  if (rows == 0) return nullptr;
  if (dy_type == ElementType::kBFloat16)
    detail::launch(input_grad_rows<__nv_bfloat16>, row_blocks(rows), kRowThreads, stream, s,
                   static_cast<const __nv_bfloat16*>(dy), weight, mean, rstd, residual_grad, rows,
                   cols, dx);
  else
    detail::launch(input_grad_rows<float>, row_blocks(rows), kRowThreads, stream, s,
                   static_cast<const float*>(dy), weight, mean, rstd, residual_grad, rows, cols,
                   dx);
  return detail::last_error();
}

const char* layer_norm_weight_bias_grads(const float* s, const void* dy, ElementType dy_type,
                                         const float* mean, const float* rstd, int64_t rows,
                                         int64_t cols, float* workspace, float* sums,
                                         cudaStream_t stream) {
  // 4 columns per thread: 16-byte loads of s, 16 (fp32) or 8 (bf16) of dy.
  const bool packed = cols % 4 == 0 && detail::aligned16(s) && detail::aligned16(dy);
  if (dy_type == ElementType::kBFloat16) {
    const WeightBiasTerms<__nv_bfloat16> terms{s, static_cast<const __nv_bfloat16*>(dy), mean, rstd,
                                               cols};
    if (packed)
      detail::column_sums_of<4>(terms, rows, cols, workspace, sums, stream);
    else
      detail::column_sums_of<1>(terms, rows, cols, workspace, sums, stream);
  } else {
    const WeightBiasTerms<float> terms{s, static_cast<const float*>(dy), mean, rstd, cols};
    if (packed)
      detail::column_sums_of<4>(terms, rows, cols, workspace, sums, stream);
    else
      detail::column_sums_of<1>(terms, rows, cols, workspace, sums, stream);
  }
  return detail::last_error();
}

}  // namespace demix::ops::cuda
