#include "demix/ops/gelu.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/record_function.h>
#include <torch/autograd.h>

#include <cstdint>

#include "demix/ops/cpu/vector_math.h"
#include "demix/ops/execution_policy.h"
#include "demix/ops/mixed_precision.h"

#ifdef DEMIX_CUDA_KERNELS
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "demix/ops/cuda/gelu_cuda.h"
#endif

namespace demix::ops {
namespace {

constexpr float kC0 = 0.7978845608028654f;  // sqrt(2 / pi)
constexpr float kC1 = kC0 * 0.044715f;

// gelu(x) = x s with s = sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3), since
// (1 + tanh(u)) / 2 = sigmoid(2u); gelu'(x) = s + 2 x s (1 - s) du/dx. With `grad`, writes
// grad * gelu'(x), else gelu(x). Far in the negative tail exp_poly gives inf and x s an exact -0,
// as in closed form.
[[gnu::always_inline]] inline void gelu_span(const float* __restrict x,
                                             const float* __restrict grad, float* __restrict out,
                                             int64_t n) {
  if (grad == nullptr) {
    for (int64_t i = 0; i < n; ++i) {
      const float v = x[i];
      out[i] = v / (1.0f + exp_poly(-2.0f * v * (kC0 + kC1 * v * v)));
    }
  } else {
    for (int64_t i = 0; i < n; ++i) {
      const float v = x[i];
      const float s = 1.0f / (1.0f + exp_poly(-2.0f * v * (kC0 + kC1 * v * v)));
      out[i] = grad[i] * (s + 2.0f * v * s * (1.0f - s) * (kC0 + 3.0f * kC1 * v * v));
    }
  }
}

__attribute__((target("avx512f,avx2,fma"))) void gelu_span_avx512(const float* x, const float* grad,
                                                                  float* out, int64_t n) {
  gelu_span(x, grad, out, n);
}

__attribute__((target("avx2,fma"))) void gelu_span_avx2(const float* x, const float* grad,
                                                        float* out, int64_t n) {
  gelu_span(x, grad, out, n);
}

using SpanKernel = void (*)(const float*, const float*, float*, int64_t);

SpanKernel span_kernel() {
  static const SpanKernel kernel = widest_kernel<SpanKernel>(&gelu_span_avx512, &gelu_span_avx2);
  return kernel;
}

// out = gelu(x), or grad * gelu'(x) when grad is defined; all contiguous fp32.
void run(const at::Tensor& x, const at::Tensor& grad, at::Tensor& out) {
  const float* xp = x.data_ptr<float>();
  const float* gp = grad.defined() ? grad.data_ptr<float>() : nullptr;
  float* op = out.data_ptr<float>();
  const auto kernel = span_kernel();
  at::parallel_for(0, x.numel(), 16384, [&](int64_t begin, int64_t end) {
    kernel(xp + begin, gp ? gp + begin : nullptr, op + begin, end - begin);
  });
}

struct GeluTanh : torch::autograd::Function<GeluTanh> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x) {
    RECORD_FUNCTION("demix::gelu_tanh", std::vector<c10::IValue>({x}));  // named in profiles
    ctx->save_for_backward({x});
    auto y = at::empty_like(x);
    run(x, at::Tensor(), y);
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    return {gelu_tanh_backward(grads[0], ctx->get_saved_variables()[0])};
  }
};

bool takes_kernel(const at::Tensor& x) {
  return x.is_cpu() && x.scalar_type() == at::kFloat && x.is_contiguous() && span_kernel();
}

}  // namespace

at::Tensor gelu_tanh(const at::Tensor& x) {
  return takes_kernel(x) ? GeluTanh::apply(x) : at::gelu(x, "tanh");
}

at::Tensor gelu_tanh_backward(const at::Tensor& grad, const at::Tensor& x) {
  if (!takes_kernel(x)) return at::gelu_backward(grad, x, "tanh");
  auto dx = at::empty_like(x);
  run(x, grad.contiguous(), dx);
  return dx;
}

std::pair<at::Tensor, at::Tensor> gelu_tanh_backward_and_column_sums(const at::Tensor& grad,
                                                                     const at::Tensor& x) {
#ifdef DEMIX_CUDA_KERNELS
  const bool fits = execution_policy().fused_cuda_kernels && x.is_cuda() && x.dim() == 2 &&
                    x.scalar_type() == grad.scalar_type() && x.sizes() == grad.sizes() &&
                    (x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16) &&
                    x.size(0) < cuda::kMaxColumnSumRows;
  if (fits) {
    const int64_t rows = x.size(0), cols = x.size(1);
    const c10::cuda::CUDAGuard device(x.device());
    const auto xc = x.contiguous(), gc = grad.contiguous();
    auto dx = at::empty_like(xc);
    const auto options = x.options().dtype(at::kFloat);
    auto workspace = at::empty({cuda::column_sums_workspace(rows, cols)}, options);
    auto sums = at::empty({cols}, options);
    const char* error = cuda::gelu_tanh_backward_and_column_sums(
        x.scalar_type() == at::kFloat ? cuda::ElementType::kFloat : cuda::ElementType::kBFloat16,
        gc.const_data_ptr(), xc.const_data_ptr(), rows, cols, dx.mutable_data_ptr(),
        workspace.mutable_data_ptr<float>(), sums.mutable_data_ptr<float>(),
        c10::cuda::getCurrentCUDAStream());
    TORCH_CHECK(error == nullptr,
                "gelu_tanh_backward_and_column_sums: CUDA kernel launch failed: ", error);
    return {dx, sums};
  }
#endif
  auto dx = gelu_tanh_backward(grad, x);
  auto sums = column_sums(dx);
  return {std::move(dx), std::move(sums)};
}

}  // namespace demix::ops
