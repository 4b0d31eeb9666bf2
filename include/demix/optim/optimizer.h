#pragma once

// AdamW with decoupled weight decay through ATen's fused multi-tensor kernel (one call per
// parameter group instead of a loop over tensors).
// Weight decay applies to matrices only: never to biases, LayerNorms or embeddings.

#include <ATen/core/Tensor.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace demix {
struct OptimConfig;
}

namespace demix::optim {

class AdamW {
 public:
  AdamW(const std::vector<std::pair<std::string, at::Tensor>>& named_params,
        const OptimConfig& optim);

  // One update at learning rate `lr`. Parameters without a gradient (an expert that saw no rows)
  // are left alone, moments included. With `skip` (a float 0-dim tensor on the parameters'
  // device), the update is skipped when it holds 1 (a non-finite gradient), without a host sync.
  // With `grad_divisor` (likewise), the kernel divides the gradients by it as it reads them: how
  // clipping is applied, without a pass of its own over the gradients.
  void step(double lr, const at::Tensor& skip = {}, const at::Tensor& grad_divisor = {});
  void zero_grad();

  // Moments and step counts by parameter name: exp_avg/<name>, exp_avg_sq/<name>, step/<name>
  // (state_name). The tensors are the optimizer's own: copying into them restores a state.
  std::map<std::string, at::Tensor> state() const;
  static std::string state_name(const std::string& slot, const std::string& parameter);
  static std::string parameter_of(const std::string& state_name);

  static bool decays(const std::string& name, const at::Tensor& param);

 private:
  struct Slot {
    std::string name;
    at::Tensor param, exp_avg, exp_avg_sq, step;
    bool decay;
  };
  std::vector<Slot> slots_;
  double beta1_, beta2_, eps_, weight_decay_;
};

// The sum of the squares of one CPU gradient, as a float 0-dim tensor.
at::Tensor squared_norm(const at::Tensor& grad);
// The sum of the squares of all gradients, and its square root (the L2 norm), as 0-dim tensors
// (no host sync).
at::Tensor grad_sum_of_squares(const std::vector<at::Tensor>& params);
at::Tensor grad_norm(const std::vector<at::Tensor>& params);
// Clipping to max_norm as the divisor for AdamW::step: max(1, norm / max_norm), i.e. the gradients
// are scaled by min(1, max_norm / norm). Undefined when max_norm <= 0 (no clipping).
at::Tensor clip_divisor(const at::Tensor& norm, double max_norm);

}  // namespace demix::optim
