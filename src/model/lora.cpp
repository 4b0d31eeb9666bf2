#include "demix/model/lora.h"

namespace demix::model {

LoraImpl::LoraImpl(int64_t in, int64_t out, int64_t rank, double scale)
    : a(register_parameter("a", torch::empty({rank, in}))),
      b(register_parameter("b", torch::zeros({out, rank}))),
      scale(scale) {}

torch::Tensor LoraImpl::forward(const torch::Tensor& x) {
  return torch::matmul(torch::matmul(x, a.t()), b.t()) * scale;
}

torch::Tensor with_lora(const torch::Tensor& linear_out, Lora& lora, const torch::Tensor& x) {
  return lora ? linear_out + lora->forward(x) : linear_out;
}

}  // namespace demix::model
