// layer_norm_fused_cuda.cu built for the CPU emulator.
#include "emulation.h"
// The emulator first: it defines the launch and the CUDA keywords the kernels use.
#include "../../src/ops/cuda/layer_norm_fused_cuda.cu"
