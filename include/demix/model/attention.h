#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>

#include "demix/model/kv_cache.h"
#include "demix/model/lora.h"

namespace demix::model {

// Causal multi-head self-attention through scaled_dot_product_attention (flash/efficient kernels
// on GPU, a fused kernel on CPU).
struct CausalSelfAttentionImpl : torch::nn::Module {
  // lora_rank > 0: LoRA adapters beside qkv and proj (registered as qkv_lora, proj_lora).
  CausalSelfAttentionImpl(int64_t d_model, int64_t n_head, int64_t lora_rank = 0,
                          double lora_scale = 0);
  // (B, T, C) -> (B, T, C). With `kv`, the T new tokens follow the `past` ones cached there
  // (either a prefix, past = 0, or one token at a time) and their keys and values are appended.
  torch::Tensor forward(const torch::Tensor& x, LayerKv* kv = nullptr, int64_t past = 0,
                        int64_t capacity = 0);

  int64_t n_head;
  torch::nn::Linear qkv{nullptr}, proj{nullptr};
  Lora qkv_lora{nullptr}, proj_lora{nullptr};
};
TORCH_MODULE(CausalSelfAttention);

}  // namespace demix::model
