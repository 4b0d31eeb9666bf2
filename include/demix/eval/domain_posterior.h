#pragma once

// The domain posterior of the DEMix paper (sec. 5, eq. 3-4), in log space throughout.
//
// For a block of T tokens and experts j = 1..E with token log-probabilities
// l_j(t) = log p_j(x_t | x_<t) (the full model path through expert j):
//   prefix posterior:   log P(D=j | x_<t) = log P(D=j) + sum_{s<t} l_j(s) - logsumexp_i(same for i)
//   last-token variant: log P(D=j | x_<t) = log P(D=j) + l_j(t-1)       - logsumexp_i(same for i)
//                       (the paper code's ensemble: only the previous token re-weights the prior)
// At t = 0 both equal the prior. The mixture is
//   log p(x_t | x_<t) = logsumexp_j (log P(D=j | x_<t) + l_j(t)).
// Cumulative sums of log-probabilities only grow more negative, but the normalisation subtracts
// their maximum, so 2048-token blocks stay finite.

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

#include "demix/core/config_choices.h"

namespace demix::eval {

using PosteriorKind = EvalPosterior;  // eval.posterior

// expert_logprobs (B, T, E), log_prior (E) or (B, E) -> log P(D=j | x_<t): (B, T, E).
at::Tensor log_posterior(const at::Tensor& expert_logprobs, const at::Tensor& log_prior,
                         PosteriorKind kind);
// The posterior after the whole block, log P(D=j | x_0..x_{T-1}): (B, E).
at::Tensor log_block_posterior(const at::Tensor& expert_logprobs, const at::Tensor& log_prior,
                               PosteriorKind kind);
// log p(x_t | x_<t) of the mixture: (B, T).
at::Tensor mixture_logprobs(const at::Tensor& expert_logprobs, const at::Tensor& log_posterior);

// A prior over experts. `uniform` and `cached` (a fixed, estimated or given distribution) never
// change; `updating` is the exponentially weighted mean of the block posteriors seen so far, in
// block order, as in the DEMix paper's code (pandas ewm(alpha, adjust=False)): it is uniform
// before the first block, the first block's posterior after it, and then
//   prior <- alpha * P(D | block) + (1 - alpha) * prior   after each further block.
// Updating per block keeps it independent of how the blocks are batched.
class Prior {
 public:
  static Prior uniform(int64_t experts);
  static Prior updating(int64_t experts, double alpha);
  static Prior fixed(const std::vector<double>& probs);  // normalised; zeros allowed

  at::Tensor log_probs() const;  // (E), float64
  const std::vector<double>& probs() const { return probs_; }
  bool is_updating() const { return alpha_ > 0; }
  // log P(D | block) of consecutive blocks, (B, E): applied row by row; no-op unless updating.
  void update(const at::Tensor& log_block_posteriors);

 private:
  std::vector<double> probs_;
  double alpha_ = 0;
  int64_t blocks_seen_ = 0;
};

// The k experts with the largest prior probability (ties: the lower id), in increasing id order.
std::vector<int64_t> top_k_experts(const std::vector<double>& probs, int64_t k);

}  // namespace demix::eval
