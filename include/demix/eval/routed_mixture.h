#pragma once

// Evaluation routed by the cluster router (c-BTM), the cheap alternative to the domain posterior:
// before each run of `every` scored positions the router reads all of the text before the first
// of their targets (never a target itself), chooses the top-k experts by softmax(-d^2 / T), and
// only those experts run on the block; each position's probability is the chosen experts'
// mixture with the renormalised router weights. The choice depends on the text alone, so every
// block's experts are known before any expert runs.

#include <ATen/core/Tensor.h>

#include <vector>

#include "demix/cluster/router.h"
#include "demix/data/domain_batcher.h"
#include "demix/eval/mixture.h"
#include "demix/eval/perplexity.h"
#include "demix/eval/progress.h"

namespace demix::eval {

struct RouterOptions {
  int64_t top_k = 1;  // 0: every expert, weighted by the router
  int64_t every = 32;
  double temperature = 0.1;
  int64_t batch_size = 8;
  Progress* progress = nullptr;  // advanced after each batch if given
};

// log of the router weight of each expert at each position of consecutive `windows`: (B, T, E)
// float64, -inf for the experts not chosen there. The weights of position t of block b (target
// x_{bT+t+1}) are computed from x_0 .. x_{bT+s} only, s = t rounded down to a multiple of `every`.
at::Tensor route_windows(const cluster::ClusterRouter& router, const data::EvalWindows& windows,
                         const RouterOptions& options);

struct RoutedScore {
  SplitScore score;
  std::vector<double> mean_weights;  // (E): the router weights, averaged over scored positions
  double experts_per_block = 0;      // expert forwards per block, on average
  double router_seconds = 0;         // of which the router itself
};

RoutedScore score_routed(const ExpertScorer& scorer, const cluster::ClusterRouter& router,
                         const data::EvalWindows& windows, const RouterOptions& options);

// The router of `path` for a model with experts `experts` (in this order) and a vocabulary of
// `vocab_size` tokens; throws Error naming the file otherwise.
cluster::ClusterRouter load_router(const std::string& path, const std::vector<std::string>& experts,
                                   int64_t vocab_size);

}  // namespace demix::eval
