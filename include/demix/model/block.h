#pragma once

// One pre-LayerNorm transformer block: x + attn(ln_1(x)), then h + ff(ln_2(h)). The FF is dense
// or a DEMix layer (one FF expert per domain).

#include <torch/nn/module.h>
#include <torch/nn/modules/normalization.h>

#include "demix/model/attention.h"
#include "demix/model/demix_layer.h"
#include "demix/model/gpt_config.h"
#include "demix/model/mlp.h"
#include "demix/model/routing.h"

namespace demix::model {

struct BlockImpl : torch::nn::Module {
  BlockImpl(const GptConfig& config, bool demix);
  torch::Tensor forward(const torch::Tensor& x, const Routing& routing,  // (B, T, C)
                        LayerKv* kv = nullptr, int64_t past = 0, int64_t capacity = 0);

  torch::nn::LayerNorm ln_1{nullptr}, ln_2{nullptr};
  CausalSelfAttention attn{nullptr};
  Mlp dense_ff{nullptr};         // registered as "ff" in a dense block
  DemixLayer demix_ff{nullptr};  // registered as "ff" in a DEMix block
};
TORCH_MODULE(Block);

}  // namespace demix::model
