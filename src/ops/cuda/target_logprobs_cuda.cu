#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#include "demix/ops/cuda/target_logprobs_cuda.h"
#include "element_cast.cuh"
#include "kernel_launch.cuh"

namespace demix::ops::cuda {
namespace {

// One block per row: the rows are long (a vocabulary) and many (every token of a batch).
constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

using detail::from_float;
using detail::to_float;

// 16 bytes of logits: the widest load a thread issues.
template <class T>
struct alignas(16) Pack {
  static constexpr int kSize = 16 / sizeof(T);
  T x[kSize];
};

// The online log-sum-exp of a set of logits: their maximum and sum_j exp(x_j - max). max starts
// at -inf and is never NaN; a NaN logit makes sum NaN, which every later step keeps. (A plain
// aggregate: __shared__ arrays take no constructors.)
struct MaxSum {
  float max;
  float sum;
};

__device__ __forceinline__ MaxSum no_logits() { return {-INFINITY, 0.0f}; }

__device__ __forceinline__ void add(MaxSum& a, float x) {
  if (x > a.max) {  // a larger maximum rescales the sum (by 0 while max is -inf)
    a.sum = a.sum * __expf(a.max - x) + 1.0f;
    a.max = x;
  } else if (x != -INFINITY) {  // -inf adds nothing, also while max is -inf (exp(NaN) otherwise)
    a.sum += __expf(x - a.max);
  }
}

__device__ __forceinline__ MaxSum combine(MaxSum a, MaxSum b) {
  if (a.max < b.max) {
    const MaxSum t = a;
    a = b;
    b = t;
  }
  const float scale = b.max == -INFINITY ? 0.0f : __expf(b.max - a.max);
  return {a.max, a.sum + b.sum * scale};
}

__device__ __forceinline__ MaxSum warp_reduce(MaxSum a) {
  for (int offset = 16; offset > 0; offset /= 2)
    a = combine(a, {__shfl_xor_sync(0xffffffffu, a.max, offset),
                    __shfl_xor_sync(0xffffffffu, a.sum, offset)});
  return a;
}

// The whole block's MaxSum, valid in thread 0.
__device__ MaxSum block_reduce(MaxSum a) {
  __shared__ MaxSum partial[kWarps];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  a = warp_reduce(a);
  if (lane == 0) partial[warp] = a;
  __syncthreads();
  if (warp == 0) a = warp_reduce(lane < kWarps ? partial[lane] : no_logits());
  return a;
}

template <class T, bool kPacked>
__global__ void __launch_bounds__(kThreads)
    forward_kernel(const T* __restrict__ logits, const int64_t* __restrict__ targets, int64_t v,
                   float* __restrict__ log_sum_exp, float* __restrict__ out) {
  const int64_t row = blockIdx.x;
  const T* x = logits + row * v;
  MaxSum acc = no_logits();
  if constexpr (kPacked) {
    const auto* packs = reinterpret_cast<const Pack<T>*>(x);
    for (int64_t p = threadIdx.x; p < v / Pack<T>::kSize; p += kThreads) {
      const Pack<T> pack = packs[p];
#pragma unroll
      for (int k = 0; k < Pack<T>::kSize; ++k) add(acc, to_float(pack.x[k]));
    }
  } else {
    for (int64_t j = threadIdx.x; j < v; j += kThreads) add(acc, to_float(x[j]));
  }
  acc = block_reduce(acc);
  if (threadIdx.x != 0) return;
  // +inf: log_softmax gives NaN (inf - inf); the running sum alone would not.
  const float lse = acc.max == INFINITY ? NAN : acc.max + logf(acc.sum);
  const int64_t target = targets[row];
  log_sum_exp[row] = lse;
  out[row] = target >= 0 && target < v ? to_float(x[target]) - lse : NAN;
}

template <class T>
__device__ __forceinline__ T gradient(T x, int64_t j, float lse, float g, int64_t target) {
  const float d = -g * __expf(to_float(x) - lse);
  return from_float<T>(j == target ? d + g : d);
}

template <class T, bool kPacked>
__global__ void __launch_bounds__(kThreads)
    backward_kernel(T* __restrict__ logits, const int64_t* __restrict__ targets, int64_t v,
                    const float* __restrict__ log_sum_exp, const float* __restrict__ grad_out) {
  const int64_t row = blockIdx.x;
  T* x = logits + row * v;
  const float lse = log_sum_exp[row], g = grad_out[row];
  const int64_t target = targets[row];
  if constexpr (kPacked) {
    auto* packs = reinterpret_cast<Pack<T>*>(x);
    for (int64_t p = threadIdx.x; p < v / Pack<T>::kSize; p += kThreads) {
      Pack<T> pack = packs[p];
#pragma unroll
      for (int k = 0; k < Pack<T>::kSize; ++k)
        pack.x[k] = gradient(pack.x[k], p * Pack<T>::kSize + k, lse, g, target);
      packs[p] = pack;
    }
  } else {
    for (int64_t j = threadIdx.x; j < v; j += kThreads) x[j] = gradient(x[j], j, lse, g, target);
  }
}

// Whole 16-byte loads when every row starts on a 16-byte boundary.
template <class T>
bool packed(const void* logits, int64_t v) {
  return reinterpret_cast<uintptr_t>(logits) % 16 == 0 && v * int64_t(sizeof(T)) % 16 == 0;
}

// Calls launch(element, packed) with a value of the logits' element type and std::true_type
// where whole 16-byte loads fit, then returns the launch's error.
template <class Launch>
const char* launch_for(LogitType type, const void* logits, int64_t v, Launch&& launch) {
  const auto with = [&](auto element) {
    if (packed<decltype(element)>(logits, v))
      launch(element, std::true_type{});
    else
      launch(element, std::false_type{});
  };
  switch (type) {
    case LogitType::kFloat:
      with(float{});
      break;
    case LogitType::kBFloat16:
      with(__nv_bfloat16{});
      break;
    case LogitType::kHalf:
      with(__half{});
      break;
    default:
      return "target_logprobs: unknown logit type";
  }
  return detail::last_error();
}

}  // namespace

const char* target_logprobs_forward(LogitType type, const void* logits, const int64_t* targets,
                                    int64_t rows, int64_t v, float* log_sum_exp, float* out,
                                    cudaStream_t stream) {
  if (rows == 0) return nullptr;
  return launch_for(type, logits, v, [&](auto element, auto is_packed) {
    using T = decltype(element);
    detail::launch(forward_kernel<T, decltype(is_packed)::value>, unsigned(rows), kThreads, stream,
                   static_cast<const T*>(logits), targets, v, log_sum_exp, out);
  });
}

const char* target_logprobs_backward(LogitType type, void* logits, const int64_t* targets,
                                     int64_t rows, int64_t v, const float* log_sum_exp,
                                     const float* grad_out, cudaStream_t stream) {
  if (rows == 0) return nullptr;
  return launch_for(type, logits, v, [&](auto element, auto is_packed) {
    using T = decltype(element);
    detail::launch(backward_kernel<T, decltype(is_packed)::value>, unsigned(rows), kThreads, stream,
                   static_cast<T*>(logits), targets, v, log_sum_exp, grad_out);
  });
}

}  // namespace demix::ops::cuda
