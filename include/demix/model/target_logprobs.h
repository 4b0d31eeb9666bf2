#pragma once

#include <ATen/core/Tensor.h>

namespace demix::model {

// log softmax(logits)[target] per row: (N, V), (N) -> (N), with a backward of its own. Autograd
// through cross_entropy builds the gradient from an (N, V) tensor of zeros that nll_loss scatters
// into, then log_softmax's backward; here it is softmax(logits) * -g plus g at the targets.
// Contiguous fp32 logits on a CPU with AVX2+FMA or AVX-512 take a vectorised kernel that keeps
// only each row's max and log-sum-exp (no (N, V) log-softmax) and whose backward writes the
// gradient over the saved logits: logits that are not a leaf (a model's) must not be read after
// the backward. Anything else takes ATen's log_softmax, the gradient computed in place in the
// saved log-probabilities. Either way a second backward through the graph is refused.
at::Tensor target_logprobs(const at::Tensor& logits, const at::Tensor& targets);

// The same from hidden states (N, C) and the output embedding (V, C), without autograd, for
// evaluation: the head runs on `rows` rows at a time, so the fp32 (rows, V) logits and their
// log-probabilities are two bounded buffers instead of two (N, V) tensors. Scoring 8 experts at
// once on a batch of 16 x 256 tokens with V = 8192 made those 1 GB each. With `hits`, also (N)
// bool: whether the most likely token is the target.
at::Tensor head_target_logprobs(const at::Tensor& hidden, const at::Tensor& weight,
                                const at::Tensor& targets, int64_t rows,
                                at::Tensor* hits = nullptr);

}  // namespace demix::model
