#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>

namespace demix::model {

// Causal multi-head self-attention through scaled_dot_product_attention (flash/efficient kernels
// on GPU, a fused kernel on CPU).
struct CausalSelfAttentionImpl : torch::nn::Module {
  CausalSelfAttentionImpl(int64_t d_model, int64_t n_head);
  torch::Tensor forward(const torch::Tensor& x);  // (B, T, C) -> (B, T, C)

  int64_t n_head;
  torch::nn::Linear qkv{nullptr}, proj{nullptr};
};
TORCH_MODULE(CausalSelfAttention);

}  // namespace demix::model
