#pragma once

// Runs one scope under an execution policy that differs from the current one in one choice: the
// fused CUDA kernels, or the CPU GEMM library (ops/execution_policy.h).

#include "demix/ops/execution_policy.h"

namespace demix::test_support {

inline ops::ExecutionPolicy with_fused_cuda_kernels(bool on) {
  auto policy = ops::execution_policy();
  policy.fused_cuda_kernels = on;
  return policy;
}

inline ops::ExecutionPolicy with_cpu_gemm(ops::CpuGemm library) {
  auto policy = ops::execution_policy();
  policy.cpu_gemm = library;
  return policy;
}

struct FusedCudaKernels : ops::ScopedExecutionPolicy {
  explicit FusedCudaKernels(bool on) : ScopedExecutionPolicy(with_fused_cuda_kernels(on)) {}
};

struct CpuGemmLibrary : ops::ScopedExecutionPolicy {
  explicit CpuGemmLibrary(ops::CpuGemm library) : ScopedExecutionPolicy(with_cpu_gemm(library)) {}
};

}  // namespace demix::test_support
