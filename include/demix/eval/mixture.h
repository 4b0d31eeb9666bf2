#pragma once

// Evaluation of text whose domain is unknown: every expert scores the block in one batched
// forward (the batch replicated once per expert, rows grouped by expert in the DEMix layers),
// and the domain posterior mixes their token probabilities (see domain_posterior.h).

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

#include "demix/data/domain_batcher.h"
#include "demix/eval/domain_posterior.h"
#include "demix/eval/perplexity.h"
#include "demix/eval/progress.h"
#include "demix/model/gpt.h"
#include "demix/parallel/process_groups.h"

namespace demix::eval {

// log p_j(targets | inputs) for each listed expert j: (B, T, K), one forward over K*B rows.
at::Tensor expert_logprobs(model::GptImpl& model, const at::Tensor& inputs,
                           const at::Tensor& targets, const std::vector<int64_t>& experts);

// Scores blocks with any list of experts, (B, T, K) float64. In one process: expert_logprobs.
// Under expert parallelism every rank calls it with the same arguments; each expert's leader
// scores it and the results are all-gathered, so every rank returns what one process holding
// all experts would.
class ExpertScorer {
 public:
  ExpertScorer(model::GptImpl& model,
               parallel::ProcessGroups* groups = nullptr)  // NOLINT: implicit
      : model_(model), groups_(groups) {}
  at::Tensor operator()(const at::Tensor& inputs, const at::Tensor& targets,
                        const std::vector<int64_t>& experts) const;
  // Block b under each of experts_of_block[b] only: (K_b, T) float64 per block. One forward over
  // the sum of K_b rows in one process; under expert parallelism, operator() over their union.
  std::vector<at::Tensor> rows(const at::Tensor& inputs, const at::Tensor& targets,
                               const std::vector<std::vector<int64_t>>& experts_of_block) const;
  model::GptImpl& model() const { return model_; }
  int64_t n_experts() const { return model_.config().n_experts; }

 private:
  model::GptImpl& model_;
  parallel::ProcessGroups* groups_;
};

struct MixtureOptions {
  PosteriorKind posterior = PosteriorKind::kPrefix;
  // 0: every expert; else only the k with the largest prior, chosen again before every block from
  // the prior as it stands then (it moves when updating)
  int64_t top_k = 0;
  int64_t batch_size = 8;
  Progress* progress = nullptr;  // advanced after each batch if given
};

struct MixtureScore {
  SplitScore score;
  std::vector<double> mean_block_posterior;  // (E): P(D=j | block), averaged over the blocks
  std::vector<double> final_prior;           // the prior after the last block
};

// Scores `windows` with the mixture, block by block in order: each block is mixed with `prior` as
// it stood before that block, and an updating prior then takes in the block's posterior. Batches
// of options.batch_size blocks share the experts' forwards; the result does not depend on it.
MixtureScore score_mixture(const ExpertScorer& scorer, const data::EvalWindows& windows,
                           Prior& prior, const MixtureOptions& options);

// The cached prior (paper sec. 5.2): run the updating prior over the first `blocks` windows of
// held-out text of the target domain, then freeze it.
Prior estimate_prior(const ExpertScorer& scorer, const data::EvalWindows& held_out, int64_t blocks,
                     double alpha, const MixtureOptions& options);

// Per-position posterior of one block under `prior`: (T, E) probabilities, for plots.
at::Tensor block_posterior_trace(const ExpertScorer& scorer, const data::EvalWindows& windows,
                                 const Prior& prior, PosteriorKind kind);

// Prior files: {"experts": [...], "prior": [...], ...}.
void write_prior(const std::string& path, const Prior& prior,
                 const std::vector<std::string>& experts, const std::string& source,
                 int64_t blocks);
// "alpha 0.700, beta 0.300": a prior or posterior for a log line.
std::string format_prior(const std::vector<std::string>& experts, const std::vector<double>& probs);
// Reads a prior file over exactly `experts`, in order: one finite value >= 0 per expert, summing
// to 1 within kPriorSumTolerance (then renormalised); anything else is refused naming the file.
inline constexpr double kPriorSumTolerance = 0.01;
Prior read_prior(const std::string& path, const std::vector<std::string>& experts);

}  // namespace demix::eval
