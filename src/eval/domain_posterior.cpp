#include "demix/eval/domain_posterior.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "demix/core/error.h"

namespace demix::eval {

namespace {

// Evidence before each position, sum_{s<t} l(s) or l(t-1): (B, T, E), zero at t = 0.
at::Tensor evidence_before(const at::Tensor& logprobs, PosteriorKind kind) {
  const auto T = logprobs.size(1);
  auto shifted = at::zeros_like(logprobs);
  if (T > 1) {
    const auto previous = logprobs.narrow(1, 0, T - 1);
    shifted.narrow(1, 1, T - 1)
        .copy_(kind == PosteriorKind::kPrefix ? previous.cumsum(1) : previous);
  }
  return shifted;
}

at::Tensor as_batch_prior(const at::Tensor& log_prior, const at::Tensor& logprobs) {
  // (E) or (B, E) -> (B, 1, E), in the log-probs' dtype
  auto p = log_prior.to(logprobs.options());
  return (p.dim() == 1 ? p.unsqueeze(0) : p).unsqueeze(1);
}

}  // namespace

at::Tensor log_posterior(const at::Tensor& expert_logprobs, const at::Tensor& log_prior,
                         PosteriorKind kind) {
  TORCH_CHECK(expert_logprobs.dim() == 3, "expert_logprobs must be (B, T, E)");
  const auto joint =
      as_batch_prior(log_prior, expert_logprobs) + evidence_before(expert_logprobs, kind);
  return at::log_softmax(joint, -1);  // subtracts the max: finite however long the block
}

at::Tensor log_block_posterior(const at::Tensor& expert_logprobs, const at::Tensor& log_prior,
                               PosteriorKind kind) {
  const auto evidence = kind == PosteriorKind::kPrefix
                            ? expert_logprobs.sum(1)
                            : expert_logprobs.select(1, expert_logprobs.size(1) - 1);  // (B, E)
  return at::log_softmax(as_batch_prior(log_prior, expert_logprobs).squeeze(1) + evidence, -1);
}

at::Tensor mixture_logprobs(const at::Tensor& expert_logprobs, const at::Tensor& log_posterior) {
  return at::logsumexp(expert_logprobs + log_posterior, -1);
}

Prior Prior::uniform(int64_t experts) {
  Prior p;
  p.probs_.assign(size_t(experts), 1.0 / double(experts));
  return p;
}

Prior Prior::updating(int64_t experts, double alpha) {
  if (!(alpha > 0 && alpha <= 1))
    throw Error("eval.alpha=" + std::to_string(alpha) + ": expected 0 < alpha <= 1");
  Prior p = uniform(experts);
  p.alpha_ = alpha;
  return p;
}

Prior Prior::fixed(const std::vector<double>& probs) {
  const double total = std::accumulate(probs.begin(), probs.end(), 0.0);
  if (probs.empty() || !(total > 0) || std::any_of(probs.begin(), probs.end(), [](double v) {
        return !(v >= 0) || !std::isfinite(v);
      }))
    throw Error("prior: expected non-negative probabilities with a positive sum");
  Prior p;
  for (double v : probs) p.probs_.push_back(v / total);
  return p;
}

at::Tensor Prior::log_probs() const {
  return at::tensor(probs_, at::TensorOptions().dtype(at::kDouble)).log();
}

void Prior::update(const at::Tensor& log_block_posteriors) {
  if (!is_updating()) return;
  const auto posteriors = log_block_posteriors.to(at::kDouble).exp().cpu().contiguous();
  TORCH_CHECK(posteriors.dim() == 2 && posteriors.size(1) == int64_t(probs_.size()),
              "posterior has the wrong number of experts");
  const auto* row = posteriors.data_ptr<double>();
  for (int64_t b = 0; b < posteriors.size(0); ++b, row += probs_.size()) {
    const double weight = blocks_seen_++ == 0 ? 1.0 : alpha_;  // ewm(adjust=False) starts at x_0
    for (size_t j = 0; j < probs_.size(); ++j)
      probs_[j] = weight * row[j] + (1 - weight) * probs_[j];
  }
}

std::vector<int64_t> top_k_experts(const std::vector<double>& probs, int64_t k) {
  std::vector<int64_t> ids(probs.size());
  std::iota(ids.begin(), ids.end(), 0);
  std::stable_sort(ids.begin(), ids.end(),
                   [&](int64_t a, int64_t b) { return probs[a] > probs[b]; });
  ids.resize(size_t(std::clamp<int64_t>(k, 1, int64_t(probs.size()))));
  std::sort(ids.begin(), ids.end());
  return ids;
}

}  // namespace demix::eval
