#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/moduledict.h>

#include <vector>

#include "demix/model/mlp.h"
#include "demix/model/routing.h"

namespace demix::model {

// A DEMix layer (paper, sec. 2): one FF expert per training domain, no router. Only the experts
// this process hosts are materialised; they are keyed by their global id, so parameter names
// (`experts.<id>.fc1.weight`) are the same whatever the placement.
struct DemixLayerImpl : torch::nn::Module {
  DemixLayerImpl(int64_t d_model, int64_t d_ff, const std::vector<int64_t>& expert_ids);

  // Runs each expert once on its rows: (B, T, C) -> (B, T, C).
  torch::Tensor forward(const torch::Tensor& x, const Routing& routing);

  bool hosts(int64_t expert) const;
  MlpImpl& expert(int64_t id);  // checks that the expert is hosted here

  torch::nn::ModuleDict experts;
};
TORCH_MODULE(DemixLayer);

}  // namespace demix::model
