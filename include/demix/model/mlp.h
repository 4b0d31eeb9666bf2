#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>

namespace demix::model {

// The GPT-2 feed-forward block: Linear -> GELU (tanh approximation) -> Linear. A dense model has
// one per block; a DEMix layer holds one per domain as its experts.
struct MlpImpl : torch::nn::Module {
  MlpImpl(int64_t d_model, int64_t d_ff);
  torch::Tensor forward(const torch::Tensor& x);  // (..., C) -> (..., C)

  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(Mlp);

}  // namespace demix::model
