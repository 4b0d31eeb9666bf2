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
  return routing.by_expert(
      x, [&](int64_t e, const torch::Tensor& rows, int64_t) { return expert(e).forward(rows); });
}

}  // namespace demix::model
