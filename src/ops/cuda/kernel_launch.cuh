#pragma once

// How demix's CUDA kernels are launched: `launch(kernel, blocks, threads, stream, args...)`
// rather than the <<<>>> syntax, so that the same kernel sources also build as plain C++ under
// the test emulator (tests/cuda_emulation/), which runs each block's threads on host threads.

#include <cuda_runtime_api.h>

#include <utility>

namespace demix::ops::cuda::detail {

#ifndef DEMIX_CUDA_EMULATION
template <class... Params, class... Args>
void launch(void (*kernel)(Params...), dim3 blocks, dim3 threads, cudaStream_t stream,
            Args&&... args) {
  kernel<<<blocks, threads, 0, stream>>>(std::forward<Args>(args)...);
}
#endif

// The error of the last launch (CUDA's sticky last error: also an earlier launch's, had that one
// gone unchecked), as a message, or nullptr.
inline const char* last_error() {
  const cudaError_t error = cudaGetLastError();
  return error == cudaSuccess ? nullptr : cudaGetErrorString(error);
}

}  // namespace demix::ops::cuda::detail
