#include "demix/model/lora.h"

#include "demix/ops/linear_map.h"

namespace demix::model {

LoraImpl::LoraImpl(int64_t in, int64_t out, int64_t rank, double scale)
    : a(register_parameter("a", torch::empty({rank, in}))),
      b(register_parameter("b", torch::zeros({out, rank}))),
      scale(scale) {}

torch::Tensor LoraImpl::forward(const torch::Tensor& x) {
  return torch::matmul(torch::matmul(x, a.t()), b.t()) * scale;
}

torch::Tensor linear(const torch::nn::Linear& layer, Lora& lora, const torch::Tensor& x) {
  auto y = ops::linear_map(x, layer->weight, layer->bias);
  return lora ? y + lora->forward(x) : y;
}

}  // namespace demix::model
