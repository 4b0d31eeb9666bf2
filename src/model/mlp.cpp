#include "demix/model/mlp.h"

namespace demix::model {

MlpImpl::MlpImpl(int64_t d_model, int64_t d_ff)
    : fc1(register_module("fc1", torch::nn::Linear(d_model, d_ff))),
      fc2(register_module("fc2", torch::nn::Linear(d_ff, d_model))) {}

torch::Tensor MlpImpl::forward(const torch::Tensor& x) { return fc2(at::gelu(fc1(x), "tanh")); }

}  // namespace demix::model
