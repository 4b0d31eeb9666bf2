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
  return routing.by_expert(x, [&](int64_t e, const torch::Tensor& rows, int64_t first_row) {
    LayerKv part;  // the expert's rows of the cache (views: its writes land in the cache)
    if (kv)
      part = {kv->k.narrow(0, first_row, rows.size(0)), kv->v.narrow(0, first_row, rows.size(0))};
    return expert(e).forward(rows, routing, kv ? &part : nullptr, past, capacity);
  });
}

}  // namespace demix::model
