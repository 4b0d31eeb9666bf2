#pragma once

// Turns demix's fused CUDA kernels (model/fused_cuda.h) on or off for one scope.

#include "demix/model/fused_cuda.h"

namespace demix::test_support {

class FusedCudaKernels {
 public:
  explicit FusedCudaKernels(bool on) : before_(model::fused_cuda_kernels()) {
    model::set_fused_cuda_kernels(on);
  }
  ~FusedCudaKernels() { model::set_fused_cuda_kernels(before_); }
  FusedCudaKernels(const FusedCudaKernels&) = delete;
  FusedCudaKernels& operator=(const FusedCudaKernels&) = delete;

 private:
  bool before_;
};

}  // namespace demix::test_support
