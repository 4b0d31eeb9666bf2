#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>

#include "demix/model/lora.h"

namespace demix::model {

// The GPT-2 feed-forward block: Linear -> GELU (tanh approximation) -> Linear. A dense model has
// one per block; a DEMix layer holds one per domain as its experts.
struct MlpImpl : torch::nn::Module {
  // lora_rank > 0: LoRA adapters beside fc1 and fc2 (registered as fc1_lora, fc2_lora).
  MlpImpl(int64_t d_model, int64_t d_ff, int64_t lora_rank = 0, double lora_scale = 0);
  torch::Tensor forward(const torch::Tensor& x);  // (..., C) -> (..., C)

  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
  Lora fc1_lora{nullptr}, fc2_lora{nullptr};
};
TORCH_MODULE(Mlp);

}  // namespace demix::model
