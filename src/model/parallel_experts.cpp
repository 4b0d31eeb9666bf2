#include "demix/model/parallel_experts.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
#include <ATen/record_function.h>
#include <torch/autograd.h>

#include "demix/model/gelu.h"
#include "demix/model/mlp.h"

namespace demix::model {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Runs f(g) for every expert g, the experts spread over the threads. Grad mode is thread-local:
// the workers get it off, as the calling autograd node has it.
template <class F>
void for_each_expert(int64_t experts, const F& f) {
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

// params: fc1.weight, fc1.bias, fc2.weight, fc2.bias of each expert in turn.
struct ParallelExpertMlps : torch::autograd::Function<ParallelExpertMlps> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, at::TensorList params,
                            const std::vector<int64_t>& rows) {
    RECORD_FUNCTION("demix::parallel_expert_mlps", std::vector<c10::IValue>({x}));
    const ExpertRows part(rows);
    const auto G = part.experts();
    auto y = at::empty_like(x);
    std::vector<at::Tensor> pre(rows.size()), act(rows.size());
    for_each_expert(G, [&](int64_t g) {
      const auto* p = &params[size_t(4 * g)];
      pre[size_t(g)] = at::addmm(p[1], part.of(x, g), p[0].t());
      act[size_t(g)] = gelu_tanh(pre[size_t(g)]);
      auto out = part.of(y, g);
      at::addmm_out(out, p[3], act[size_t(g)], p[2].t());
    });
    variable_list saved = {x};
    saved.insert(saved.end(), params.begin(), params.end());
    saved.insert(saved.end(), pre.begin(), pre.end());
    saved.insert(saved.end(), act.begin(), act.end());
    ctx->save_for_backward(saved);
    ctx->saved_data["rows"] = rows;
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const ExpertRows part(ctx->saved_data["rows"].toIntVector());
    const auto G = part.experts();
    const auto& x = saved[0];
    const auto* params = &saved[1];
    const auto* pre = &saved[size_t(1 + 4 * G)];
    const auto* act = &saved[size_t(1 + 5 * G)];
    const auto gy = grads[0].contiguous();
    // One slot per input: x, the 4G parameters, and rows (not a tensor). Which are wanted is
    // asked here: the autograd task the answer depends on is the calling thread's.
    variable_list out(size_t(2 + 4 * G));
    std::vector<char> wanted(size_t(1 + 4 * G));
    for (size_t k = 0; k < wanted.size(); ++k) wanted[k] = ctx->needs_input_grad(k);
    if (wanted[0]) out[0] = at::empty_like(x);
    for_each_expert(G, [&](int64_t g) {
      const auto i = size_t(4 * g);
      const auto need = [&](size_t k) { return wanted[1 + i + k] != 0; };
      const auto gy_g = part.of(gy, g);
      if (need(2)) out[1 + i + 2] = gy_g.t().mm(act[g]);
      if (need(3)) out[1 + i + 3] = gy_g.sum(0);
      const auto dpre = gelu_tanh_backward(gy_g.mm(params[i + 2]), pre[g]);
      if (need(0)) out[1 + i] = dpre.t().mm(part.of(x, g));
      if (need(1)) out[1 + i + 1] = dpre.sum(0);
      if (out[0].defined()) {
        auto dx = part.of(out[0], g);
        at::mm_out(dx, dpre, params[i]);
      }
    });
    return out;
  }
};

}  // namespace

bool parallel_experts_fit(const at::Tensor& x, const std::vector<MlpImpl*>& experts) {
  // Autocast, like grad mode, is thread-local: the workers would run the GEMMs uncast.
  if (!x.is_cpu() || experts.size() < 2 || at::get_num_threads() < 2 ||
      at::autocast::is_autocast_enabled(at::kCPU))
    return false;
  for (const auto* e : experts)
    if (e->fc1_lora || e->fc2_lora || !e->fc1->bias.defined() || !e->fc2->bias.defined() ||
        e->fc1->weight.scalar_type() != x.scalar_type())
      return false;
  return true;
}

at::Tensor parallel_expert_mlps(const at::Tensor& x, const std::vector<int64_t>& rows,
                                const std::vector<MlpImpl*>& experts) {
  std::vector<at::Tensor> params;
  for (auto* e : experts)
    params.insert(params.end(), {e->fc1->weight, e->fc1->bias, e->fc2->weight, e->fc2->bias});
  // As a TensorList, so that autograd sees each parameter as an input (a vector would not be).
  return ParallelExpertMlps::apply(x.contiguous(), at::TensorList(params), rows);
}

}  // namespace demix::model
