#pragma once

// Whether training on CUDA takes demix's second set of CUDA kernels: the bias gradients of
// bf16_linear summed by column_sums_cuda.h, and a DEMix layer's experts as one autograd node
// (expert_mlps.h) whose GELU backward also sums fc1's bias gradient. They remove ATen's
// elementwise passes that torch.compile fuses away (the experts' cat, bias-gradient reductions,
// GELU backward; their share of a step is in docs/performance.md). Off by default: they were
// written and tested on a CPU-only machine and have not run on a GPU yet. The CUDA tests
// (ctest -R Cuda) check them against ATen; train.fused_cuda_kernels turns them on.

namespace demix::model {

void set_fused_cuda_kernels(bool on);
bool fused_cuda_kernels();

}  // namespace demix::model
