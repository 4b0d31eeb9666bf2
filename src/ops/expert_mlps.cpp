#include "demix/ops/expert_mlps.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
#include <ATen/record_function.h>
#include <torch/autograd.h>

#include "demix/ops/cpu/cpu_gemm.h"
#include "demix/ops/execution_policy.h"
#include "demix/ops/gelu.h"
#include "demix/ops/mixed_precision.h"

namespace demix::ops {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Runs f(g) for every expert g: on a CPU spread over the threads, on a GPU one after another
// (each GEMM fills the device). Grad mode is thread-local: the workers get it off, as the calling
// autograd node has it.
template <class F>
void for_each_expert(bool on_threads, int64_t experts, const F& f) {
  if (!on_threads) {
    for (int64_t g = 0; g < experts; ++g) f(g);
    return;
  }
  at::parallel_for(0, experts, 1, [&](int64_t begin, int64_t end) {
    at::NoGradGuard no_grad;
    for (int64_t g = begin; g < end; ++g) f(g);
  });
}

// Where each expert's rows lie in a tensor that holds them as consecutive runs.
class ExpertRows {
 public:
  explicit ExpertRows(const std::vector<int64_t>& rows) : rows_(rows), first_(rows.size(), 0) {
    for (size_t g = 1; g < rows.size(); ++g) first_[g] = first_[g - 1] + rows[g - 1];
  }
  int64_t experts() const { return int64_t(rows_.size()); }
  at::Tensor of(const at::Tensor& t, int64_t g) const {  // expert g's rows of t
    return t.narrow(0, first_[size_t(g)], rows_[size_t(g)]);
  }

 private:
  std::vector<int64_t> rows_, first_;
};

// into = a @ b, where into is of a's dtype or fp32 (bf16 operands, fp32 result).
void mm_into(at::Tensor& into, const at::Tensor& a, const at::Tensor& b) {
  if (into.scalar_type() == a.scalar_type())
    gemm_out(into, a, b);
  else
    mm_into_fp32_out(into, a, b);
}

// params: fc1.weight, fc1.bias, fc2.weight, fc2.bias of each expert in turn. Saved: x in the
// compute dtype, each expert's fc1 and fc2 weights in it, then the fc1 outputs, then the GELU
// outputs.
struct ExpertMlps : torch::autograd::Function<ExpertMlps> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, at::TensorList params,
                            const std::vector<int64_t>& rows, at::ScalarType dtype) {
    RECORD_FUNCTION("demix::expert_mlps", std::vector<c10::IValue>({x}));
    const ExpertRows part(rows);
    const auto G = part.experts();
    const bool on_threads = x.is_cpu();
    const auto xc = x.to(dtype);  // once for all experts
    std::vector<at::Tensor> cast(params.size());
    for (size_t i = 0; i < params.size(); ++i) cast[i] = params[i].to(dtype);
    auto y = at::empty(x.sizes(), x.options().dtype(dtype));
    std::vector<at::Tensor> pre(rows.size()), act(rows.size());
    for_each_expert(on_threads, G, [&](int64_t g) {
      const auto* p = &cast[size_t(4 * g)];
      pre[size_t(g)] = gemm(part.of(xc, g), p[0].t(), p[1]);
      act[size_t(g)] = gelu_tanh(pre[size_t(g)]);
      auto out = part.of(y, g);
      gemm_out(out, act[size_t(g)], p[2].t(), p[3]);
    });
    variable_list saved = {xc};
    for (int64_t g = 0; g < G; ++g) saved.insert(saved.end(), {cast[4 * g], cast[4 * g + 2]});
    saved.insert(saved.end(), pre.begin(), pre.end());
    saved.insert(saved.end(), act.begin(), act.end());
    ctx->save_for_backward(saved);
    ctx->saved_data["rows"] = rows;
    ctx->saved_data["x_dtype"] = x.scalar_type();
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const ExpertRows part(ctx->saved_data["rows"].toIntVector());
    const auto G = part.experts();
    const auto& xc = saved[0];
    const auto* weights = &saved[1];  // fc1, fc2 of each expert
    const auto* pre = &saved[size_t(1 + 2 * G)];
    const auto* act = &saved[size_t(1 + 3 * G)];
    const bool on_threads = xc.is_cpu();
    const auto gy = grads[0].to(xc.scalar_type()).contiguous();
    // One slot per input: x, the 4G parameters, rows and dtype (not tensors). Which are wanted
    // is asked here, over the tensor inputs: the autograd task the answer depends on is the
    // calling thread's.
    variable_list out(size_t(3 + 4 * G));
    std::vector<char> wanted(size_t(1 + 4 * G));
    for (size_t k = 0; k < wanted.size(); ++k) wanted[k] = ctx->needs_input_grad(k);
    if (wanted[0])
      out[0] = at::empty(xc.sizes(), xc.options().dtype(ctx->saved_data["x_dtype"].toScalarType()));
    for_each_expert(on_threads, G, [&](int64_t g) {
      const auto i = size_t(4 * g);
      const auto need = [&](size_t k) { return wanted[1 + i + k] != 0; };
      const auto gy_g = part.of(gy, g);
      if (need(2)) out[1 + i + 2] = mm_into_fp32(gy_g.t(), act[g]);
      if (need(3)) out[1 + i + 3] = column_sums(gy_g);
      if (!need(0) && !need(1) && !out[0].defined()) return;
      const auto gact = gemm(gy_g, weights[2 * g + 1]);
      at::Tensor dpre;
      if (need(1))
        std::tie(dpre, out[1 + i + 1]) = gelu_tanh_backward_and_column_sums(gact, pre[g]);
      else
        dpre = gelu_tanh_backward(gact, pre[g]);
      if (need(0)) out[1 + i] = mm_into_fp32(dpre.t(), part.of(xc, g));
      if (out[0].defined()) {
        auto dx = part.of(out[0], g);
        mm_into(dx, dpre, weights[2 * g]);
      }
    });
    return out;
  }
};

bool experts_of_one_dtype(const std::vector<ExpertWeights>& experts) {
  if (experts.empty()) return false;
  const auto& first = experts[0].fc1_weight;
  for (const auto& e : experts)
    for (const auto* p : {&e.fc1_weight, &e.fc1_bias, &e.fc2_weight, &e.fc2_bias})
      if (!p->defined() || p->scalar_type() != first.scalar_type() || p->device() != first.device())
        return false;
  return at::isFloatingType(first.scalar_type());
}

}  // namespace

std::optional<at::ScalarType> expert_mlps_dtype(const at::Tensor& x,
                                                const std::vector<ExpertWeights>& experts) {
  if (!experts_of_one_dtype(experts) || x.device() != experts[0].fc1_weight.device())
    return std::nullopt;
  const auto dtype = experts[0].fc1_weight.scalar_type();
  if (x.is_cpu()) {
    // Autocast, like grad mode, is thread-local: the workers would run the GEMMs uncast.
    if (experts.size() < 2 || at::get_num_threads() < 2 ||
        at::autocast::is_autocast_enabled(at::kCPU) || x.scalar_type() != dtype)
      return std::nullopt;
    return dtype;
  }
  if (!x.is_cuda() || !execution_policy().fused_cuda_kernels) return std::nullopt;
  if (at::autocast::is_autocast_enabled(at::kCUDA)) {
    if (at::autocast::get_autocast_dtype(at::kCUDA) != at::kBFloat16 || dtype != at::kFloat)
      return std::nullopt;
    return at::kBFloat16;
  }
  if (x.scalar_type() != dtype) return std::nullopt;
  return dtype;
}

at::Tensor expert_mlps(const at::Tensor& x, const std::vector<int64_t>& rows,
                       const std::vector<ExpertWeights>& experts, at::ScalarType dtype) {
  int64_t total = 0;
  for (auto r : rows) total += r;
  TORCH_CHECK(x.dim() == 2 && rows.size() == experts.size() && total == x.size(0),
              "expert_mlps: expected (R, C) input whose R rows are the experts' rows");
  std::vector<at::Tensor> params;
  for (const auto& e : experts)
    params.insert(params.end(), {e.fc1_weight, e.fc1_bias, e.fc2_weight, e.fc2_bias});
  // As a TensorList, so that autograd sees each parameter as an input (a vector would not be).
  return ExpertMlps::apply(x.contiguous(), at::TensorList(params), rows, dtype);
}

}  // namespace demix::ops
