#include "demix/model/demix_layer.h"

#include <algorithm>

#include "demix/ops/expert_mlps.h"

namespace demix::model {

DemixLayerImpl::DemixLayerImpl(int64_t d_model, int64_t d_ff,
                               const std::vector<int64_t>& expert_ids)
    : experts(register_module("experts", torch::nn::ModuleDict())) {
  std::vector<std::pair<std::string, std::shared_ptr<torch::nn::Module>>> hosted;
  for (auto id : expert_ids) hosted.emplace_back(std::to_string(id), Mlp(d_model, d_ff).ptr());
  experts->update(hosted);
}

bool DemixLayerImpl::hosts(int64_t expert) const {
  return experts->contains(std::to_string(expert));
}

MlpImpl& DemixLayerImpl::expert(int64_t id) {
  const auto key = std::to_string(id);
  TORCH_CHECK(experts->contains(key), "DEMix layer: expert ", id, " is not hosted here");
  return *experts[key]->as<Mlp>();
}

torch::Tensor DemixLayerImpl::forward(const torch::Tensor& x, const Routing& routing) {
  // The experts as one node where they are plain MLPs (LoRA adapters run as modules).
  std::vector<ops::ExpertWeights> experts;
  bool plain = true;
  for (const auto& g : routing.groups()) {
    const auto& e = expert(g.expert);
    plain = plain && !e.fc1_lora && !e.fc2_lora;
    experts.push_back({e.fc1->weight, e.fc1->bias, e.fc2->weight, e.fc2->bias});
  }
  const auto dtype = plain ? ops::expert_mlps_dtype(x, experts) : std::nullopt;
  if (!dtype)
    return routing.by_expert(
        x, [&](int64_t e, const torch::Tensor& rows, int64_t) { return expert(e).forward(rows); });
  const int64_t tokens_per_row = x.numel() / std::max<int64_t>(x.size(0), 1) / x.size(-1);
  std::vector<int64_t> rows;
  for (const auto& g : routing.groups()) rows.push_back(g.rows * tokens_per_row);
  const auto flat = routing.to_expert_order(x).reshape({-1, x.size(-1)});
  return routing.from_expert_order(ops::expert_mlps(flat, rows, experts, *dtype).view(x.sizes()));
}

}  // namespace demix::model
