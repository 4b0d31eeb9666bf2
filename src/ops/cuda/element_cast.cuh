#pragma once

// Conversions between the element types demix's CUDA kernels read and write and the fp32 they
// compute in. from_float rounds to nearest even, as ATen's casts do.

#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace demix::ops::cuda::detail {

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }

template <class T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) {
  return __float2bfloat16(x);
}
template <>
__device__ __forceinline__ __half from_float<__half>(float x) {
  return __float2half(x);
}

}  // namespace demix::ops::cuda::detail
