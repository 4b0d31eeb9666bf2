#include "demix/model/block.h"

#include "demix/ops/layer_norm.h"

namespace demix::model {

BlockImpl::BlockImpl(const GptConfig& c, bool demix)
    : ln_1(register_module("ln_1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.d_model})))),
      ln_2(register_module("ln_2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.d_model})))),
      attn(register_module("attn",
                           CausalSelfAttention(c.d_model, c.n_head, c.lora_rank, c.lora_scale()))) {
  if (demix)
    demix_ff = register_module("ff", DemixLayer(c.d_model, c.d_ff, c.hosted_experts()));
  else
    dense_ff = register_module("ff", Mlp(c.d_model, c.d_ff, c.lora_rank, c.lora_scale()));
}

torch::Tensor BlockImpl::forward(const torch::Tensor& x, const Routing& routing, LayerKv* kv,
                                 int64_t past, int64_t capacity) {
  const auto attn_out = attn->forward(ops::layer_norm(ln_1, x), kv, past, capacity);
  const auto [h, normed] = ops::add_layer_norm(ln_2, x, attn_out);  // h = x + attn_out
  return h + (demix_ff ? demix_ff->forward(normed, routing) : dense_ff->forward(normed));
}

}  // namespace demix::model
