#include "demix/model/demix_block.h"

namespace demix::model {

DemixBlockImpl::DemixBlockImpl(const GptConfig& config)
    : experts(register_module("experts", torch::nn::ModuleDict())) {
  std::vector<std::pair<std::string, std::shared_ptr<torch::nn::Module>>> hosted;
  for (auto id : config.hosted_experts())
    hosted.emplace_back(std::to_string(id), Block(config, /*demix=*/false).ptr());
  experts->update(hosted);
}

BlockImpl& DemixBlockImpl::expert(int64_t id) {
  const auto key = std::to_string(id);
  TORCH_CHECK(experts->contains(key), "DEMix block: expert ", id, " is not hosted here");
  return *experts[key]->as<Block>();
}

torch::Tensor DemixBlockImpl::forward(const torch::Tensor& x, const Routing& routing, LayerKv* kv,
                                      int64_t past, int64_t capacity) {
  const auto& groups = routing.groups();
  if (kv && !kv->k.defined()) {  // one cache for all rows; each expert writes its own slice
    const auto& attn = *expert(groups[0].expert).attn;
    const auto hs = x.size(2) / attn.n_head;
    kv->k = torch::empty({x.size(0), attn.n_head, capacity, hs}, x.options());
    kv->v = torch::empty_like(kv->k);
  }
  if (groups.size() == 1) return expert(groups[0].expert).forward(x, routing, kv, past, capacity);
  std::vector<int64_t> sizes;
  for (const auto& g : groups) sizes.push_back(g.rows);
  auto chunks = routing.to_expert_order(x).split_with_sizes(sizes);
  std::vector<torch::Tensor> outputs;
  int64_t row = 0;
  for (size_t i = 0; i < groups.size(); ++i) {
    LayerKv rows;
    if (kv) rows = {kv->k.narrow(0, row, groups[i].rows), kv->v.narrow(0, row, groups[i].rows)};
    outputs.push_back(
        expert(groups[i].expert).forward(chunks[i], routing, kv ? &rows : nullptr, past, capacity));
    row += groups[i].rows;
  }
  return routing.from_expert_order(torch::cat(outputs));
}

}  // namespace demix::model
