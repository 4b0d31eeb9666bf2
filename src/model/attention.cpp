#include "demix/model/attention.h"

namespace demix::model {

CausalSelfAttentionImpl::CausalSelfAttentionImpl(int64_t d_model, int64_t n_head, int64_t lora_rank,
                                                 double lora_scale)
    : n_head(n_head),
      qkv(register_module("qkv", torch::nn::Linear(d_model, 3 * d_model))),
      proj(register_module("proj", torch::nn::Linear(d_model, d_model))) {
  if (lora_rank == 0) return;
  qkv_lora = register_module("qkv_lora", Lora(d_model, 3 * d_model, lora_rank, lora_scale));
  proj_lora = register_module("proj_lora", Lora(d_model, d_model, lora_rank, lora_scale));
}

torch::Tensor CausalSelfAttentionImpl::forward(const torch::Tensor& x, LayerKv* kv, int64_t past,
                                               int64_t capacity) {
  const auto B = x.size(0), T = x.size(1), C = x.size(2), hs = C / n_head;
  // Unbind the (q, k, v) axis of the (B, T, 3, nh, hs) view, then transpose each: the backward
  // stacks the three gradients straight into the (B, T, 3C) layout of the qkv output. Unbinding
  // after a permute to (3, B, nh, T, hs) would stack there and then copy once more to (B, T, 3C);
  // three selects would each fill a zero tensor of the whole (docs/performance.md).
  const auto qkv_out = linear(qkv, qkv_lora, x).view({B, T, 3, n_head, hs}).unbind(2);
  const auto q = qkv_out[0].transpose(1, 2);  // (B, nh, T, hs)
  auto k = qkv_out[1].transpose(1, 2), v = qkv_out[2].transpose(1, 2);
  if (kv) {
    // A causal mask with an offset is not needed: a prefix starts at 0, later tokens come alone
    // and attend to every cached position.
    TORCH_CHECK(past == 0 || T == 1, "KV cache: after the prefix, one token at a time");
    TORCH_CHECK(past + T <= capacity, "KV cache: ", past + T, " positions exceed ", capacity);
    if (!kv->k.defined()) {
      kv->k = torch::empty({B, n_head, capacity, hs}, k.options());
      kv->v = torch::empty_like(kv->k);
    }
    kv->k.narrow(2, past, T).copy_(k);
    kv->v.narrow(2, past, T).copy_(v);
    k = kv->k.narrow(2, 0, past + T);
    v = kv->v.narrow(2, 0, past + T);
  }
  auto y = at::scaled_dot_product_attention(q, k, v, /*attn_mask=*/{},
                                            /*dropout_p=*/0.0, /*is_causal=*/past == 0);
  y = y.transpose(1, 2).reshape({B, T, C});  // (B, nh, T, hs) -> (B, T, C)
  return linear(proj, proj_lora, y);
}

}  // namespace demix::model
