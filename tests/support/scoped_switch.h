#pragma once

// Sets one of the model's process-wide switches for one scope, restoring it after: the fused CUDA
// kernels (model/fused_cuda.h) and the CPU GEMM library (model/cpu_gemm.h).

#include "demix/model/cpu_gemm.h"
#include "demix/model/fused_cuda.h"

namespace demix::test_support {

template <class T, T (*Get)(), void (*Set)(T)>
class ScopedSwitch {
 public:
  explicit ScopedSwitch(T value) : before_(Get()) { Set(value); }
  ~ScopedSwitch() { Set(before_); }
  ScopedSwitch(const ScopedSwitch&) = delete;
  ScopedSwitch& operator=(const ScopedSwitch&) = delete;

 private:
  T before_;
};

using FusedCudaKernels =
    ScopedSwitch<bool, model::fused_cuda_kernels, model::set_fused_cuda_kernels>;
using CpuGemmLibrary = ScopedSwitch<model::CpuGemm, model::cpu_gemm, model::set_cpu_gemm>;

}  // namespace demix::test_support
