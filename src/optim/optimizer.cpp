#include "demix/optim/optimizer.h"

#include <algorithm>

#include "demix/core/config.h"
#include "demix/core/error.h"
#include "demix/model/param_roles.h"

namespace demix::optim {

bool AdamW::decays(const std::string& name, const at::Tensor& param) {
  return param.dim() >= 2 && !model::param_role(name).embedding();
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

void AdamW::step(double lr, const at::Tensor& skip, const at::Tensor& grad_divisor) {
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
        /*maximize=*/false,
        /*grad_scale=*/grad_divisor.defined() ? std::optional<at::Tensor>(grad_divisor)
                                              : std::nullopt,
        /*found_inf=*/skip.defined() ? std::optional<at::Tensor>(skip) : std::nullopt);
    if (skip.defined()) at::_foreach_sub_(steps, std::vector<at::Tensor>(steps.size(), skip));
  }
}

void AdamW::zero_grad() {
  for (auto& s : slots_) s.param.mutable_grad() = at::Tensor();
}

std::string AdamW::state_name(const std::string& slot, const std::string& parameter) {
  return slot + "/" + parameter;
}

std::string AdamW::parameter_of(const std::string& state_name) {
  return state_name.substr(state_name.find('/') + 1);
}

std::map<std::string, at::Tensor> AdamW::state() const {
  std::map<std::string, at::Tensor> out;
  for (const auto& s : slots_) {
    out[state_name("exp_avg", s.name)] = s.exp_avg;
    out[state_name("exp_avg_sq", s.name)] = s.exp_avg_sq;
    out[state_name("step", s.name)] = s.step;
  }
  return out;
}

at::Tensor squared_norm(const at::Tensor& grad) {
  // BLAS dots of 64K-element chunks of the flattened gradient, summed in float64: one pass and no
  // temporary (pow(2).sum() took 4x as long on 10M elements here). Not one dot of the whole: some
  // BLAS builds accumulate it in one fp32 sum (on this AMD EPYC: 2.5e-6 relative error on 1M
  // elements, 1e-4 on 10M; the chunks: 5e-8). Not at::norm / _foreach_norm: on CPU their fp32
  // reduction loses ~1e-5 relative on a 1M-element tensor. CPU only (the .item() per chunk).
  const auto flat = grad.to(at::kFloat).reshape(-1);
  constexpr int64_t kChunk = int64_t(1) << 16;
  double total = 0;
  for (int64_t begin = 0; begin < flat.numel(); begin += kChunk) {
    const auto chunk = flat.narrow(0, begin, std::min(kChunk, flat.numel() - begin));
    total += at::dot(chunk, chunk).item<double>();
  }
  return at::scalar_tensor(total, flat.options());
}

at::Tensor grad_sum_of_squares(const std::vector<at::Tensor>& params) {
  const auto device = params.empty() ? at::Device(at::kCPU) : params[0].device();
  std::vector<at::Tensor> grads;
  for (const auto& p : params)
    if (p.grad().defined()) grads.push_back(p.grad());
  if (grads.empty()) return at::zeros({}, at::TensorOptions(device));
  // On a GPU a kernel per tensor (hundreds with experts) is launch-bound: one multi-tensor norm.
  if (device.is_cuda()) return at::stack(at::_foreach_norm(grads, 2, at::kFloat)).square().sum();
  auto sum_sq = at::zeros({}, at::TensorOptions(device));
  for (const auto& g : grads) sum_sq += squared_norm(g);
  return sum_sq;
}

at::Tensor grad_norm(const std::vector<at::Tensor>& params) {
  return grad_sum_of_squares(params).sqrt();
}

at::Tensor clip_divisor(const at::Tensor& norm, double max_norm) {
  if (max_norm <= 0) return {};
  return ((norm + 1e-6) / max_norm).clamp_min(1.0).to(at::kFloat);
}

}  // namespace demix::optim
