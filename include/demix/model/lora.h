#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>

namespace demix::model {

// A LoRA adapter (Hu et al., 2021) beside a frozen Linear(in, out): x -> scale * B(A(x)), A of
// shape (rank, in), B of shape (out, rank). B starts at zero, so the adapted model starts as the
// frozen one.
struct LoraImpl : torch::nn::Module {
  LoraImpl(int64_t in, int64_t out, int64_t rank, double scale);
  torch::Tensor forward(const torch::Tensor& x);  // (..., in) -> (..., out)

  torch::Tensor a, b;
  double scale;
};
TORCH_MODULE(Lora);

// layer(x), plus the adapter's output when there is one. Through linear_map (linear_map.h), not
// torch::nn::Linear's forward, which does matmul, then a separate += bias pass over the output,
// for 3-D inputs.
torch::Tensor linear(const torch::nn::Linear& layer, Lora& lora, const torch::Tensor& x);

}  // namespace demix::model
