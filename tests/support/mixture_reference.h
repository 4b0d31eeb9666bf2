#pragma once

// An independent float64 reference for DEMix mixing (paper sec. 5), written with plain loops from
// the equations, not from the library's tensor code. The experts' token log-probabilities come
// from one known-domain forward per expert. Blocks are taken in order; each block is mixed with
// the prior as it stood before it; the top-k experts are chosen before every block (largest prior,
// ties to the lower id), their prior renormalised; the block posterior shares out their prior mass
// and the other experts keep theirs; an updating prior is the ewm(alpha, adjust=False) of those
// block posteriors (the first block's posterior, then alpha * posterior + (1 - alpha) * prior).

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "demix/data/domain_batcher.h"
#include "demix/model/gpt.h"

namespace demix::reference {

// logprobs[b][t][j]: block b, position t, expert j.
using ExpertLogprobs = std::vector<std::vector<std::vector<double>>>;

inline ExpertLogprobs separate_expert_logprobs(model::GptImpl& m, const data::EvalWindows& w,
                                               int64_t experts) {
  torch::NoGradGuard no_grad;
  m.eval();
  const auto B = w.inputs.size(0), T = w.inputs.size(1);
  const std::vector<double> row(static_cast<size_t>(experts));
  ExpertLogprobs out(static_cast<size_t>(B),
                     std::vector<std::vector<double>>(static_cast<size_t>(T), row));
  for (int64_t j = 0; j < experts; ++j) {
    const model::Routing routing(std::vector<int64_t>(size_t(B), j), torch::kCPU);
    const auto lp = m.token_logprobs(w.inputs, w.targets, routing).to(torch::kDouble).contiguous();
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < T; ++t)
        out[size_t(b)][size_t(t)][size_t(j)] = lp[b][t].item<double>();
  }
  return out;
}

inline double log_sum_exp(const std::vector<double>& v) {
  const double top = *std::max_element(v.begin(), v.end());
  if (std::isinf(top)) return top;
  double sum = 0;
  for (double x : v) sum += std::exp(x - top);
  return top + std::log(sum);
}

struct ReferenceMixture {
  double nll = 0;
  std::vector<double> final_prior;
  std::vector<std::vector<size_t>> chosen;  // the experts chosen for each block
};

// alpha = 0: a fixed prior. top_k = 0: every expert. last_token: the paper code's posterior that
// only the previous token re-weights (the block posterior: the prior and the last token).
inline ReferenceMixture reference_mixture(const ExpertLogprobs& lp, std::vector<double> prior,
                                          double alpha, size_t top_k, bool last_token = false) {
  ReferenceMixture r;
  const size_t E = prior.size();
  for (size_t b = 0; b < lp.size(); ++b) {
    std::vector<size_t> ids(E);
    std::iota(ids.begin(), ids.end(), 0);
    std::stable_sort(ids.begin(), ids.end(),
                     [&](size_t x, size_t y) { return prior[x] > prior[y]; });
    ids.resize(top_k == 0 ? E : std::min(top_k, E));
    std::sort(ids.begin(), ids.end());
    r.chosen.push_back(ids);
    double mass = 0;
    for (size_t j : ids) mass += prior[j];
    std::vector<double> evidence(ids.size(), 0.0);  // log-likelihood so far, per chosen expert
    for (size_t t = 0; t < lp[b].size(); ++t) {
      std::vector<double> weight, joint;
      for (size_t i = 0; i < ids.size(); ++i) {
        const double w = std::log(prior[ids[i]] / mass) + evidence[i];
        weight.push_back(w);
        joint.push_back(w + lp[b][t][ids[i]]);
      }
      r.nll -= log_sum_exp(joint) - log_sum_exp(weight);
      for (size_t i = 0; i < ids.size(); ++i)
        evidence[i] = last_token ? lp[b][t][ids[i]] : evidence[i] + lp[b][t][ids[i]];
    }
    std::vector<double> block_log(ids.size());
    for (size_t i = 0; i < ids.size(); ++i)
      block_log[i] = std::log(prior[ids[i]] / mass) + evidence[i];
    const double norm = log_sum_exp(block_log);
    std::vector<double> posterior = prior;  // the experts that did not run keep their mass
    for (size_t i = 0; i < ids.size(); ++i)
      posterior[ids[i]] = mass * std::exp(block_log[i] - norm);
    if (alpha > 0)
      for (size_t j = 0; j < E; ++j)
        prior[j] = b == 0 ? posterior[j] : alpha * posterior[j] + (1 - alpha) * prior[j];
  }
  r.final_prior = prior;
  return r;
}

}  // namespace demix::reference
