#include "chunked_sums.cuh"
#include "demix/ops/cuda/column_sums_cuda.h"

namespace demix::ops::cuda {

int64_t column_sums_workspace(int64_t rows, int64_t cols) {
  return detail::workspace_floats(rows, cols);
}

const char* column_sums(const void* x, ElementType type, int64_t rows, int64_t cols,
                        float* workspace, float* out, cudaStream_t stream) {
  using detail::column_sums_of;
  using detail::MatrixTerms;
  const bool aligned = detail::aligned16(x);
  if (type == ElementType::kFloat) {
    const MatrixTerms<float> terms{static_cast<const float*>(x), cols};
    if (aligned && cols % 4 == 0)
      column_sums_of<4>(terms, rows, cols, workspace, out, stream);
    else
      column_sums_of<1>(terms, rows, cols, workspace, out, stream);
  } else {
    const MatrixTerms<__nv_bfloat16> terms{static_cast<const __nv_bfloat16*>(x), cols};
    if (aligned && cols % 8 == 0)
      column_sums_of<8>(terms, rows, cols, workspace, out, stream);
    else
      column_sums_of<1>(terms, rows, cols, workspace, out, stream);
  }
  return detail::last_error();
}

}  // namespace demix::ops::cuda
