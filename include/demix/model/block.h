#pragma once

// One pre-LayerNorm transformer block: x + attn(ln_1(x)), then h + ff(ln_2(h)). The FF is dense
// or a DEMix layer (one FF expert per domain).

#include <torch/nn/module.h>
#include <torch/nn/modules/normalization.h>

#include <optional>

#include "demix/model/attention.h"
#include "demix/model/demix_layer.h"
#include "demix/model/gpt_config.h"
#include "demix/model/mlp.h"
#include "demix/model/routing.h"

namespace demix::model {

// The residual stream between blocks as x + pending: a block leaves its FF output unadded
// (pending) for the next block's first LayerNorm, which adds it in the same pass on the fused
// CUDA path (add_layer_norm). sum() adds it where nothing fuses it.
struct ResidualStream {
  torch::Tensor x;
  std::optional<torch::Tensor> pending;
  torch::Tensor sum() const { return pending ? x + *pending : x; }
};

struct BlockImpl : torch::nn::Module {
  BlockImpl(const GptConfig& config, bool demix);
  torch::Tensor forward(const torch::Tensor& x, const Routing& routing,  // (B, T, C)
                        LayerKv* kv = nullptr, int64_t past = 0, int64_t capacity = 0);
  // The same on the stream's sum, returning h with the FF output pending.
  ResidualStream forward(const ResidualStream& stream, const Routing& routing,
                         LayerKv* kv = nullptr, int64_t past = 0, int64_t capacity = 0);

  torch::nn::LayerNorm ln_1{nullptr}, ln_2{nullptr};
  CausalSelfAttention attn{nullptr};
  Mlp dense_ff{nullptr};         // registered as "ff" in a dense block
  DemixLayer demix_ff{nullptr};  // registered as "ff" in a DEMix block
};
TORCH_MODULE(Block);

}  // namespace demix::model
