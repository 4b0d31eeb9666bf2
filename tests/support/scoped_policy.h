#pragma once

// Runs one scope under an execution policy that differs from the current one in one choice: the
// fused CUDA kernels, or the CPU GEMM library (model/execution_policy.h).

#include "demix/model/execution_policy.h"

namespace demix::test_support {

inline model::ExecutionPolicy with_fused_cuda_kernels(bool on) {
  auto policy = model::execution_policy();
  policy.fused_cuda_kernels = on;
  return policy;
}

inline model::ExecutionPolicy with_cpu_gemm(model::CpuGemm library) {
  auto policy = model::execution_policy();
  policy.cpu_gemm = library;
  return policy;
}

struct FusedCudaKernels : model::ScopedExecutionPolicy {
  explicit FusedCudaKernels(bool on) : ScopedExecutionPolicy(with_fused_cuda_kernels(on)) {}
};

struct CpuGemmLibrary : model::ScopedExecutionPolicy {
  explicit CpuGemmLibrary(model::CpuGemm library) : ScopedExecutionPolicy(with_cpu_gemm(library)) {}
};

}  // namespace demix::test_support
