#include "demix/model/mlp.h"

#include "demix/ops/gelu.h"

namespace demix::model {

MlpImpl::MlpImpl(int64_t d_model, int64_t d_ff, int64_t lora_rank, double lora_scale)
    : fc1(register_module("fc1", torch::nn::Linear(d_model, d_ff))),
      fc2(register_module("fc2", torch::nn::Linear(d_ff, d_model))) {
  if (lora_rank == 0) return;
  fc1_lora = register_module("fc1_lora", Lora(d_model, d_ff, lora_rank, lora_scale));
  fc2_lora = register_module("fc2_lora", Lora(d_ff, d_model, lora_rank, lora_scale));
}

torch::Tensor MlpImpl::forward(const torch::Tensor& x) {
  const auto h = ops::gelu_tanh(linear(fc1, fc1_lora, x));
  return linear(fc2, fc2_lora, h);
}

}  // namespace demix::model
