#pragma once

// How demix's fused CUDA kernels are launched: `launch(kernel, blocks, threads, stream, args...)`
// rather than the <<<>>> syntax, so that the same kernel sources also build as plain C++ under
// the test emulator (tests/cuda_emulation/), which runs each block's threads on host threads.

#include <cuda_runtime_api.h>

#include <utility>

namespace demix::model::cuda::detail {

#ifndef DEMIX_CUDA_EMULATION
template <class... Params, class... Args>
void launch(void (*kernel)(Params...), dim3 blocks, dim3 threads, cudaStream_t stream,
            Args&&... args) {
  kernel<<<blocks, threads, 0, stream>>>(std::forward<Args>(args)...);
}
#endif

}  // namespace demix::model::cuda::detail
