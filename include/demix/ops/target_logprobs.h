#pragma once

#include <ATen/core/Tensor.h>

namespace demix::ops {

// log softmax(logits)[target] per row: (N, V), (N) -> (N) in fp32, with a backward of its own.
// Autograd through cross_entropy builds the gradient from an (N, V) tensor of zeros that nll_loss
// scatters into, then log_softmax's backward; here it is softmax(logits) * -g plus g at the
// targets. Two fused paths keep only each row's log-sum-exp (no (N, V) log-softmax) and their
// backward writes the gradient over the saved logits: logits that are not a leaf (a model's)
// must not be read after the backward.
// - CUDA (where built with nvcc): fp32, bf16 or fp16 logits in their own dtype, one read in the
//   forward and one read-write in the backward; no host sync, so a target outside [0, V) gives
//   NaN rather than an error.
// - CPU fp32 on AVX2+FMA or AVX-512: a vectorised kernel; bf16/fp16 logits are widened first.
// Anything else takes ATen's log_softmax in fp32 or wider, the gradient computed in place in the
// saved log-probabilities. Either way a second backward through the graph is refused.
at::Tensor target_logprobs(const at::Tensor& logits, const at::Tensor& targets);

// The same from hidden states (N, C) and the output embedding (V, C), without autograd, for
// evaluation: the head runs on `rows` rows at a time, each chunk through target_logprobs, so the
// (rows, V) logits are one bounded buffer instead of (N, V) tensors. Scoring 8 experts at once on
// a batch of 16 x 256 tokens with V = 8192 made each of those 1 GB. With `hits`, also (N)
// bool: whether the most likely token is the target.
at::Tensor head_target_logprobs(const at::Tensor& hidden, const at::Tensor& weight,
                                const at::Tensor& targets, int64_t rows,
                                at::Tensor* hits = nullptr);

}  // namespace demix::ops
