#pragma once

// Builds demix's CUDA kernel sources as plain C++ and runs them on the CPU, for tests on machines
// without a GPU: each block's threads are host threads (blocks one after another), __shared__
// arrays are function statics, __syncthreads is a barrier over the block and __shfl_xor_sync an
// exchange within the warp; launches check CUDA's grid and block limits. The kernels launch
// through detail::launch (src/model/kernel_launch.cuh), defined here. What this cannot show:
// timing, the memory model beyond these barriers, alignment faults.

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>

#define DEMIX_CUDA_EMULATION 1
#undef __global__
#define __global__
#undef __shared__
#define __shared__ static  // one block runs at a time
#undef __launch_bounds__
#define __launch_bounds__(...)

namespace demix::cuda_emulation {

extern thread_local uint3 threadIdx, blockIdx;
extern thread_local dim3 blockDim, gridDim;

void syncthreads();
float shfl_xor(float value, int lane_mask);
// Runs body once per thread of every block; records a launch error instead where CUDA would.
void run_grid(dim3 blocks, dim3 threads, const std::function<void()>& body);

}  // namespace demix::cuda_emulation

using demix::cuda_emulation::blockDim;
using demix::cuda_emulation::blockIdx;
using demix::cuda_emulation::gridDim;
using demix::cuda_emulation::threadIdx;
using std::max;
using std::min;

inline void __syncthreads() { demix::cuda_emulation::syncthreads(); }
inline float __shfl_xor_sync(unsigned, float value, int lane_mask) {
  return demix::cuda_emulation::shfl_xor(value, lane_mask);
}
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
// CUDA's __expf is an approximation (2 ulp + a little); the tests' tolerances allow for it.
inline float __expf(float x) { return std::exp(x); }

namespace demix::ops::cuda::detail {

template <class... Params, class... Args>
void launch(void (*kernel)(Params...), dim3 blocks, dim3 threads, cudaStream_t, Args&&... args) {
  cuda_emulation::run_grid(blocks, threads, [&] { kernel(args...); });
}

}  // namespace demix::ops::cuda::detail
