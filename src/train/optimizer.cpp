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

void AdamW::step(double lr) {
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
    at::_fused_adamw_(params, grads, exp_avgs, exp_avg_sqs, /*max_exp_avg_sqs=*/{}, steps, lr,
                      beta1_, beta2_, decay ? weight_decay_ : 0.0, eps_, /*amsgrad=*/false,
                      /*maximize=*/false);
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

void AdamW::load_state(const std::map<std::string, at::Tensor>& state) {
  at::NoGradGuard no_grad;
  for (auto& s : slots_) {
    for (auto [kind, dst] :
         {std::pair{"exp_avg/", &s.exp_avg}, std::pair{"exp_avg_sq/", &s.exp_avg_sq},
          std::pair{"step/", &s.step}}) {
      const std::string key = kind + s.name;
      const auto it = state.find(key);
      if (it == state.end()) throw Error("optimizer state has no entry '" + key + "'");
      if (!it->second.sizes().equals(dst->sizes()))
        throw Error("optimizer state '" + key + "' has the wrong shape");
      dst->copy_(it->second);
    }
  }
}

at::Tensor clip_grad_norm(const std::vector<at::Tensor>& params, double max_norm) {
  std::vector<at::Tensor> grads;
  for (const auto& p : params)
    if (p.grad().defined()) grads.push_back(p.grad());
  if (grads.empty()) return at::zeros({});
  auto norm = at::stack(at::_foreach_norm(grads, 2.0)).norm();
  if (max_norm > 0) {
    auto scale = (max_norm / (norm + 1e-6)).clamp_max(1.0);
    at::_foreach_mul_(grads, scale);
  }
  return norm;
}

}  // namespace demix::train
