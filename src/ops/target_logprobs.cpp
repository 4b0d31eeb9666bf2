#include "demix/ops/target_logprobs.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/record_function.h>
#include <torch/autograd.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "demix/ops/cpu/cpu_gemm.h"
#include "demix/ops/cpu/vector_math.h"

#ifdef DEMIX_CUDA_KERNELS
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "demix/ops/cuda/target_logprobs_cuda.h"
#endif

namespace demix::ops {
namespace {

// Any device and dtype: ATen's log_softmax, gathered.
struct TargetLogprobs : torch::autograd::Function<TargetLogprobs> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& logits,
                            const at::Tensor& targets) {
    auto logp = at::_log_softmax(logits, -1, /*half_to_float=*/false);  // one fused pass
    const auto index = targets.unsqueeze(-1);
    auto out = logp.gather(-1, index).squeeze(-1);
    ctx->save_for_backward({logp, index});
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto g = grads[0].unsqueeze(-1);  // (N, 1)
    // d/dlogits of log_softmax(logits)[target] = onehot(target) - softmax(logits). The saved
    // log-probabilities become the gradient in place: backward runs once per graph (a second
    // one fails autograd's version check instead of reading a modified buffer).
    auto grad = saved[0].exp_().mul_(-g);
    grad.scatter_add_(-1, saved[1], g);
    return {grad, at::Tensor()};
  }
};

// The row kernels work on whole vectors (Float16 or Float8) plus a scalar tail: reductions keep a
// vector of partial maxima and sums (GCC does not reassociate one float sum without -ffast-math),
// and loads are prefetched by hand: with the hardware prefetch alone, perf showed the first
// kernels waiting on DRAM for much of their cycles.
constexpr int64_t kPrefetchAhead = 512;  // floats: 2 KB

template <class Vec>
[[gnu::always_inline]] inline Vec load(const float* p) {
  Vec v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}

// Per row of x (rows x v, contiguous): its maximum m, s = log sum exp(x - m) and
// out = (x[target] - m) - s, log-softmax's own order of operations (x - m is exact for the
// elements that matter). A row holding NaN or +-inf gets m = NaN and is left to the caller
// (exp_poly does not propagate NaN).
template <class Vec>
[[gnu::always_inline]] inline void forward_rows(const float* __restrict x,
                                                const int64_t* __restrict targets, int64_t rows,
                                                int64_t v, float* __restrict max,
                                                float* __restrict log_sum, float* __restrict out) {
  constexpr int64_t kLanes = sizeof(Vec) / sizeof(float);
  for (int64_t i = 0; i < rows; ++i, x += v) {
    Vec top = Vec{} + x[0], nonfinite = {};
    int64_t j = 0;
    for (; j + kLanes <= v; j += kLanes) {
      __builtin_prefetch(x + j + kPrefetchAhead);
      const Vec y = load<Vec>(x + j);
      top = top > y ? top : y;
      nonfinite += y * 0.0f;  // NaN once any element is NaN or +-inf
    }
    float m = x[0], bad = 0;
    for (int64_t k = 0; k < kLanes; ++k) m = m > top[k] ? m : top[k], bad += nonfinite[k];
    for (int64_t t = j; t < v; ++t) m = m > x[t] ? m : x[t], bad += x[t] * 0.0f;
    if (bad != 0) {
      max[i] = std::numeric_limits<float>::quiet_NaN();
      continue;
    }
    Vec sum = {};  // this second pass reads the row from cache
    for (j = 0; j + kLanes <= v; j += kLanes) sum += exp_poly(load<Vec>(x + j) - m);
    double total = 0;
    for (int64_t k = 0; k < kLanes; ++k) total += sum[k];
    for (int64_t t = j; t < v; ++t) total += exp_poly(x[t] - m);
    max[i] = m;
    log_sum[i] = float(std::log(total));
    out[i] = (x[targets[i]] - m) - log_sum[i];
  }
}

// Per finite row (max not NaN), in place: x = -g exp((x - max) - log_sum), plus g at the target.
// Terms below e^-87 are written as 0 (ATen's exp gives 0 or a subnormal there).
template <class Vec>
[[gnu::always_inline]] inline void backward_rows(float* __restrict x,
                                                 const int64_t* __restrict targets, int64_t rows,
                                                 int64_t v, const float* __restrict max,
                                                 const float* __restrict log_sum,
                                                 const float* __restrict g) {
  constexpr int64_t kLanes = sizeof(Vec) / sizeof(float);
  for (int64_t i = 0; i < rows; ++i, x += v) {
    const float m = max[i], s = log_sum[i], gi = g[i];
    if (m != m) continue;
    int64_t j = 0;
    for (; j + kLanes <= v; j += kLanes) {
      __builtin_prefetch(x + j + kPrefetchAhead, /*write=*/1);
      const Vec d = (load<Vec>(x + j) - m) - s;
      const Vec grad = d < -87.0f ? Vec{} : -gi * exp_poly(d);
      __builtin_memcpy(x + j, &grad, sizeof grad);
    }
    for (; j < v; ++j) {
      const float d = (x[j] - m) - s;
      x[j] = d < -87.0f ? 0.0f : -gi * exp_poly(d);
    }
    x[targets[i]] += gi;
  }
}

__attribute__((target("avx512f,avx2,fma"))) void forward_rows_avx512(const float* x,
                                                                     const int64_t* targets,
                                                                     int64_t rows, int64_t v,
                                                                     float* max, float* log_sum,
                                                                     float* out) {
  forward_rows<Float16>(x, targets, rows, v, max, log_sum, out);
}

__attribute__((target("avx2,fma"))) void forward_rows_avx2(const float* x, const int64_t* targets,
                                                           int64_t rows, int64_t v, float* max,
                                                           float* log_sum, float* out) {
  forward_rows<Float8>(x, targets, rows, v, max, log_sum, out);
}

__attribute__((target("avx512f,avx2,fma"))) void backward_rows_avx512(
    float* x, const int64_t* targets, int64_t rows, int64_t v, const float* max,
    const float* log_sum, const float* g) {
  backward_rows<Float16>(x, targets, rows, v, max, log_sum, g);
}

__attribute__((target("avx2,fma"))) void backward_rows_avx2(float* x, const int64_t* targets,
                                                            int64_t rows, int64_t v,
                                                            const float* max, const float* log_sum,
                                                            const float* g) {
  backward_rows<Float8>(x, targets, rows, v, max, log_sum, g);
}

using ForwardKernel = void (*)(const float*, const int64_t*, int64_t, int64_t, float*, float*,
                               float*);
using BackwardKernel = void (*)(float*, const int64_t*, int64_t, int64_t, const float*,
                                const float*, const float*);

ForwardKernel forward_kernel() {
  static const auto kernel = widest_kernel<ForwardKernel>(&forward_rows_avx512, &forward_rows_avx2);
  return kernel;
}

BackwardKernel backward_kernel() {
  static const auto kernel =
      widest_kernel<BackwardKernel>(&backward_rows_avx512, &backward_rows_avx2);
  return kernel;
}

// Rows per parallel task: ~64K logits.
int64_t row_grain(int64_t v) { return std::max<int64_t>(1, 65536 / v); }

// Both fused paths' backward writes the gradient over the saved logits (see target_logprobs.h).
// What to save: a leaf's values are the caller's own, so a leaf is copied first.
at::Tensor logits_to_overwrite(const at::Tensor& logits) {
  return logits.requires_grad() && logits.is_leaf() ? logits.clone() : logits;
}

// After the overwrite: marks the buffer written, as an in-place op would, so a second backward
// through the graph fails autograd's version check instead of reading a gradient as logits.
void mark_overwritten(at::Tensor& grad) { torch::autograd::impl::bump_version(grad); }

// The CPU fp32 path: the forward reads the logits twice per row (the second time from cache) and
// writes nothing of size (N, V); the backward turns the saved logits into their gradient in one
// pass. Rows with a NaN or infinite logit go through ATen's log_softmax (forward and backward),
// so such rows give exactly ATen's NaN/-inf results.
struct FusedTargetLogprobs : torch::autograd::Function<FusedTargetLogprobs> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& logits,
                            const at::Tensor& targets) {
    RECORD_FUNCTION("demix::target_logprobs", std::vector<c10::IValue>({logits}));
    const int64_t N = logits.size(0), V = logits.size(1);
    if (N > 0) {
      const auto [lowest, highest] = at::aminmax(targets);
      TORCH_CHECK(lowest.item<int64_t>() >= 0 && highest.item<int64_t>() < V,
                  "target_logprobs: targets must lie in [0, ", V, ")");
    }
    auto max = at::empty({N}, logits.options()), log_sum = at::empty({N}, logits.options());
    auto out = at::empty({N}, logits.options());
    const float* x = logits.data_ptr<float>();
    const int64_t* t = targets.data_ptr<int64_t>();
    float *mp = max.data_ptr<float>(), *sp = log_sum.data_ptr<float>(), *op = out.data_ptr<float>();
    const auto kernel = forward_kernel();
    at::parallel_for(0, N, row_grain(V), [&](int64_t begin, int64_t end) {
      kernel(x + begin * V, t + begin, end - begin, V, mp + begin, sp + begin, op + begin);
    });
    for (int64_t i = 0; i < N; ++i)
      if (std::isnan(mp[i])) op[i] = at::_log_softmax(logits[i], 0, false)[t[i]].item<float>();
    ctx->save_for_backward({logits_to_overwrite(logits), targets, max, log_sum});
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    auto grad = saved[0];  // the logits, overwritten (see target_logprobs.h)
    const auto& targets = saved[1];
    const auto g = grads[0].contiguous();
    const int64_t N = grad.size(0), V = grad.size(1);
    float* x = grad.data_ptr<float>();
    const int64_t* t = targets.data_ptr<int64_t>();
    const float *mp = saved[2].data_ptr<float>(), *sp = saved[3].data_ptr<float>();
    const float* gp = g.data_ptr<float>();
    const auto kernel = backward_kernel();
    at::parallel_for(0, N, row_grain(V), [&](int64_t begin, int64_t end) {
      kernel(x + begin * V, t + begin, end - begin, V, mp + begin, sp + begin, gp + begin);
    });
    for (int64_t i = 0; i < N; ++i)
      if (std::isnan(mp[i])) {
        auto row = grad[i];
        row.copy_(at::_log_softmax(row, 0, false).exp_().mul_(-gp[i]));
        row[t[i]] += gp[i];
      }
    mark_overwritten(grad);
    return {grad, at::Tensor()};
  }
};

#ifdef DEMIX_CUDA_KERNELS
void check_launch(const char* error) {
  TORCH_CHECK(error == nullptr, "target_logprobs: CUDA kernel launch failed: ", error);
}

cuda::LogitType logit_type(const at::Tensor& logits) {
  switch (logits.scalar_type()) {
    case at::kBFloat16:
      return cuda::LogitType::kBFloat16;
    case at::kHalf:
      return cuda::LogitType::kHalf;
    default:
      return cuda::LogitType::kFloat;
  }
}

// The CUDA path: logits in their own dtype (bf16 under autocast), read once by the forward and
// turned into their gradient in place by the backward (see target_logprobs.h); log-sum-exp and
// the result in fp32. No host sync: an out-of-range target gives NaN instead of an error.
struct CudaTargetLogprobs : torch::autograd::Function<CudaTargetLogprobs> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& logits,
                            const at::Tensor& targets) {
    RECORD_FUNCTION("demix::target_logprobs", std::vector<c10::IValue>({logits}));
    const int64_t N = logits.size(0), V = logits.size(1);
    const c10::cuda::CUDAGuard device(logits.device());
    auto log_sum_exp = at::empty({N}, logits.options().dtype(at::kFloat));
    auto out = at::empty({N}, logits.options().dtype(at::kFloat));
    check_launch(cuda::target_logprobs_forward(
        logit_type(logits), logits.const_data_ptr(), targets.const_data_ptr<int64_t>(), N, V,
        log_sum_exp.mutable_data_ptr<float>(), out.mutable_data_ptr<float>(),
        c10::cuda::getCurrentCUDAStream()));
    ctx->save_for_backward({logits_to_overwrite(logits), targets, log_sum_exp});
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    auto grad = saved[0];  // the logits, overwritten (see target_logprobs.h)
    const auto g = grads[0].to(at::kFloat).contiguous();
    const c10::cuda::CUDAGuard device(grad.device());
    check_launch(cuda::target_logprobs_backward(
        logit_type(grad), grad.mutable_data_ptr(), saved[1].const_data_ptr<int64_t>(), grad.size(0),
        grad.size(1), saved[2].const_data_ptr<float>(), g.const_data_ptr<float>(),
        c10::cuda::getCurrentCUDAStream()));
    mark_overwritten(grad);
    return {grad, at::Tensor()};
  }
};
#endif

// Whether `logits` (N, V) and `targets` (N) are in the layout the fused kernels take.
bool rows_fit(const at::Tensor& logits, const at::Tensor& targets) {
  return logits.dim() == 2 && logits.is_contiguous() && logits.size(1) > 0 &&
         targets.scalar_type() == at::kLong && targets.dim() == 1 &&
         targets.size(0) == logits.size(0) && targets.is_contiguous() &&
         targets.device() == logits.device();
}

}  // namespace

at::Tensor target_logprobs(const at::Tensor& logits, const at::Tensor& targets) {
#ifdef DEMIX_CUDA_KERNELS
  const auto dtype = logits.scalar_type();
  if (logits.is_cuda() && (dtype == at::kFloat || dtype == at::kBFloat16 || dtype == at::kHalf) &&
      rows_fit(logits, targets) && logits.size(0) < cuda::kTargetLogprobsMaxRows)
    return CudaTargetLogprobs::apply(logits, targets);
#endif
  // Elsewhere the log-probabilities are computed in fp32 at least.
  const bool wide = logits.scalar_type() == at::kFloat || logits.scalar_type() == at::kDouble;
  const auto x = wide ? logits : logits.to(at::kFloat);
  if (x.is_cpu() && x.scalar_type() == at::kFloat && rows_fit(x, targets) && forward_kernel())
    return FusedTargetLogprobs::apply(x, targets);
  return TargetLogprobs::apply(x, targets);
}

at::Tensor head_target_logprobs(const at::Tensor& hidden, const at::Tensor& weight,
                                const at::Tensor& targets, int64_t rows, at::Tensor* hits) {
  TORCH_CHECK(rows > 0, "head_target_logprobs: rows must be positive");
  at::NoGradGuard no_grad;
  const int64_t N = hidden.size(0);
  auto out = at::empty({N}, hidden.options().dtype(at::kFloat));
  if (hits) *hits = at::empty({N}, hidden.options().dtype(at::kBool));
  for (int64_t start = 0; start < N; start += rows) {
    const int64_t n = std::min(rows, N - start);
    const auto logits = gemm(hidden.narrow(0, start, n), weight.t());
    const auto chunk_targets = targets.narrow(0, start, n);
    if (hits) hits->narrow(0, start, n).copy_(logits.argmax(-1).eq(chunk_targets));
    out.narrow(0, start, n).copy_(target_logprobs(logits, chunk_targets));
  }
  return out;
}

}  // namespace demix::ops
