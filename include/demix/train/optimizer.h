#pragma once

// AdamW with decoupled weight decay through ATen's fused multi-tensor kernel (one call per
// parameter group instead of a loop over tensors: 50 ms vs 155 ms for 88M parameters on this CPU).
// Weight decay applies to matrices only: never to biases, LayerNorms or embeddings.

#include <ATen/core/Tensor.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace demix {
struct OptimConfig;
}

namespace demix::train {

class AdamW {
 public:
  AdamW(const std::vector<std::pair<std::string, at::Tensor>>& named_params,
        const OptimConfig& optim);

  // One update at learning rate `lr`. Parameters without a gradient (an expert that saw no rows)
  // are left alone, moments included. With `skip` (a float 0-dim tensor on the parameters'
  // device), the update is skipped when it holds 1 (a non-finite gradient), without a host sync.
  void step(double lr, const at::Tensor& skip = {});
  void zero_grad();

  // Moments and step counts by parameter name: exp_avg/<name>, exp_avg_sq/<name>, step/<name>.
  // The tensors are the optimizer's own: copying into them restores a state.
  std::map<std::string, at::Tensor> state() const;

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

// The L2 norm of all gradients, as a 0-dim tensor (no host sync).
at::Tensor grad_norm(const std::vector<at::Tensor>& params);
// Scales the gradients by min(1, max_norm / norm); max_norm = 0 disables clipping.
void clip_grads(const std::vector<at::Tensor>& params, const at::Tensor& norm, double max_norm);
// Both: clips to max_norm and returns the norm before clipping.
at::Tensor clip_grad_norm(const std::vector<at::Tensor>& params, double max_norm);

}  // namespace demix::train
