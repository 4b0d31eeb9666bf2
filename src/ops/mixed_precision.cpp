#include "demix/ops/mixed_precision.h"

#include <ATen/ATen.h>

#include "demix/ops/cpu/cpu_gemm.h"
#include "demix/ops/execution_policy.h"

#ifdef DEMIX_CUDA_KERNELS
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "demix/ops/cuda/column_sums_cuda.h"
#endif

namespace demix::ops {

at::Tensor mm_into_fp32(const at::Tensor& a, const at::Tensor& b) {
  if (a.scalar_type() != at::kBFloat16) return gemm(a, b);
  if (a.is_cuda()) return at::mm(a, b, at::kFloat);
  return at::mm(a.to(at::kFloat), b.to(at::kFloat));
}

void mm_into_fp32_out(at::Tensor& out, const at::Tensor& a, const at::Tensor& b) {
  if (a.scalar_type() != at::kBFloat16)
    gemm_out(out, a, b);
  else if (a.is_cuda())
    at::mm_out(out, a, b, at::kFloat);
  else
    at::mm_out(out, a.to(at::kFloat), b.to(at::kFloat));
}

at::Tensor column_sums(const at::Tensor& x) {
  TORCH_CHECK(x.dim() == 2, "column_sums: expected a matrix, got ", x.dim(), " dimensions");
#ifdef DEMIX_CUDA_KERNELS
  const bool fits = execution_policy().fused_cuda_kernels && x.is_cuda() && x.is_contiguous() &&
                    (x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16) &&
                    x.size(0) < cuda::kMaxColumnSumRows;
  if (fits) {
    const int64_t rows = x.size(0), cols = x.size(1);
    const c10::cuda::CUDAGuard device(x.device());
    const auto options = x.options().dtype(at::kFloat);
    auto workspace = at::empty({cuda::column_sums_workspace(rows, cols)}, options);
    auto out = at::empty({cols}, options);
    const char* error = cuda::column_sums(
        x.const_data_ptr(),
        x.scalar_type() == at::kFloat ? cuda::ElementType::kFloat : cuda::ElementType::kBFloat16,
        rows, cols, workspace.mutable_data_ptr<float>(), out.mutable_data_ptr<float>(),
        c10::cuda::getCurrentCUDAStream());
    TORCH_CHECK(error == nullptr, "column_sums: CUDA kernel launch failed: ", error);
    return out;
  }
#endif
  return x.sum(0, /*keepdim=*/false,
               x.scalar_type() == at::kBFloat16 ? at::kFloat : x.scalar_type());
}

}  // namespace demix::ops
