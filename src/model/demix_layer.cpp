#include "demix/model/demix_layer.h"

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
  const auto& groups = routing.groups();
  if (groups.size() == 1) return expert(groups[0].expert).forward(x);
  std::vector<int64_t> sizes;
  for (const auto& g : groups) sizes.push_back(g.rows);
  auto chunks = routing.to_expert_order(x).split_with_sizes(sizes);
  std::vector<torch::Tensor> outputs;
  for (size_t i = 0; i < groups.size(); ++i) {
    outputs.push_back(expert(groups[i].expert).forward(chunks[i]));
  }
  return routing.from_expert_order(torch::cat(outputs));
}

}  // namespace demix::model
