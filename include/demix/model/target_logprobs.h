#pragma once

#include <ATen/core/Tensor.h>

namespace demix::model {

// log softmax(logits)[target] per row: (N, V), (N) -> (N), with a backward of its own. Autograd
// through cross_entropy builds the gradient from an (N, V) tensor of zeros that nll_loss scatters
// into, then log_softmax's backward; here it is softmax(logits) * -g plus g at the targets,
// computed in place in the saved log-probabilities (see README, Benchmarks, for the profile).
at::Tensor target_logprobs(const at::Tensor& logits, const at::Tensor& targets);

}  // namespace demix::model
