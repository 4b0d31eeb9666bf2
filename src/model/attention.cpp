#include "demix/model/attention.h"

namespace demix::model {

CausalSelfAttentionImpl::CausalSelfAttentionImpl(int64_t d_model, int64_t n_head)
    : n_head(n_head),
      qkv(register_module("qkv", torch::nn::Linear(d_model, 3 * d_model))),
      proj(register_module("proj", torch::nn::Linear(d_model, d_model))) {}

torch::Tensor CausalSelfAttentionImpl::forward(const torch::Tensor& x) {
  const auto B = x.size(0), T = x.size(1), C = x.size(2), hs = C / n_head;
  auto heads = qkv(x).view({B, T, 3, n_head, hs}).permute({2, 0, 3, 1, 4});  // (3, B, nh, T, hs)
  auto y = at::scaled_dot_product_attention(heads[0], heads[1], heads[2], /*attn_mask=*/{},
                                            /*dropout_p=*/0.0, /*is_causal=*/true);
  y = y.transpose(1, 2).reshape({B, T, C});  // (B, nh, T, hs) -> (B, T, C)
  return proj(y);
}

}  // namespace demix::model
