#include "demix/train/optimizer.h"

#include "demix/core/config.h"
#include "demix/core/error.h"

namespace demix::train {

bool AdamW::decays(const std::string& name, const at::Tensor& param) {
  const bool embedding = name.rfind("wte.", 0) == 0 || name.rfind("wpe.", 0) == 0 ||
                         name.rfind("domain_tokens.", 0) == 0;
  return param.dim() >= 2 && !embedding;
}

AdamW::AdamW(const std::vector<std::pair<std::string, at::Tensor>>& named_params,
             const OptimConfig& optim)
    : beta1_(optim.beta1), beta2_(optim.beta2), eps_(optim.eps), weight_decay_(optim.weight_decay) {
  for (const auto& [name, p] : named_params) {
    slots_.push_back({name, p, at::zeros_like(p, at::MemoryFormat::Contiguous),
                      at::zeros_like(p, at::MemoryFormat::Contiguous),
                      at::zeros({}, p.options().dtype(at::kFloat)), decays(name, p)});
  }
}

void AdamW::step(double lr, const at::Tensor& skip) {
  at::NoGradGuard no_grad;
  for (const bool decay : {true, false}) {
    std::vector<at::Tensor> params, grads, exp_avgs, exp_avg_sqs, steps;
    for (auto& s : slots_) {
      if (s.decay != decay || !s.param.grad().defined()) continue;
      params.push_back(s.param);
      grads.push_back(s.param.grad());
      exp_avgs.push_back(s.exp_avg);
      exp_avg_sqs.push_back(s.exp_avg_sq);
      steps.push_back(s.step);
    }
    if (params.empty()) continue;
    at::_foreach_add_(steps, 1.0);  // the fused kernel reads the already-incremented step
    // found_inf: the kernel leaves parameters and moments untouched; the step count is undone.
    at::_fused_adamw_(
        params, grads, exp_avgs, exp_avg_sqs, /*max_exp_avg_sqs=*/{}, steps, lr, beta1_, beta2_,
        decay ? weight_decay_ : 0.0, eps_, /*amsgrad=*/false,
        /*maximize=*/false, /*grad_scale=*/std::nullopt,
        /*found_inf=*/skip.defined() ? std::optional<at::Tensor>(skip) : std::nullopt);
    if (skip.defined()) at::_foreach_sub_(steps, std::vector<at::Tensor>(steps.size(), skip));
  }
}

void AdamW::zero_grad() {
  for (auto& s : slots_) s.param.mutable_grad() = at::Tensor();
}

std::map<std::string, at::Tensor> AdamW::state() const {
  std::map<std::string, at::Tensor> out;
  for (const auto& s : slots_) {
    out["exp_avg/" + s.name] = s.exp_avg;
    out["exp_avg_sq/" + s.name] = s.exp_avg_sq;
    out["step/" + s.name] = s.step;
  }
  return out;
}

namespace {
std::vector<at::Tensor> defined_grads(const std::vector<at::Tensor>& params) {
  std::vector<at::Tensor> grads;
  for (const auto& p : params)
    if (p.grad().defined()) grads.push_back(p.grad());
  return grads;
}
}  // namespace

at::Tensor grad_norm(const std::vector<at::Tensor>& params) {
  // Sum of squares, not at::norm / _foreach_norm: on CPU their fp32 reduction loses ~1e-5
  // relative on a 1M-element tensor (measured: 1.0238216 vs 1.0238324 exact), while sum() uses
  // a cascade summation that keeps the norm accurate to fp32 rounding.
  auto sum_sq = at::zeros({}, at::TensorOptions(params.empty() ? at::kCPU : params[0].device()));
  for (const auto& g : defined_grads(params)) sum_sq += g.to(at::kFloat).pow(2).sum();
  return sum_sq.sqrt();
}

void clip_grads(const std::vector<at::Tensor>& params, const at::Tensor& norm, double max_norm) {
  if (max_norm <= 0) return;
  auto grads = defined_grads(params);
  if (grads.empty()) return;
  at::_foreach_mul_(grads, (max_norm / (norm + 1e-6)).clamp_max(1.0));
}

at::Tensor clip_grad_norm(const std::vector<at::Tensor>& params, double max_norm) {
  auto norm = grad_norm(params);
  clip_grads(params, norm, max_norm);
  return norm;
}

}  // namespace demix::train
