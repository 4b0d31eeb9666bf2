#pragma once

// The mixing report of `demix eval --mixture`: for every training and novel domain, the test
// perplexity with known-domain top-1 routing (training domains only), with each prior (uniform,
// updating, cached) and with cached top-k; the cached priors form the domain x expert posterior
// matrix. With eval.router, also the cluster router's top-1 and top-k (routed_mixture.h). Each
// variant is timed, so the cost of mixing can be read against one top-1 pass.

#include <string>
#include <vector>

#include "demix/core/config.h"
#include "demix/core/json.h"
#include "demix/eval/mixture.h"

namespace demix::eval {

struct MixtureVariant {
  std::string name;       // "top1", "uniform", "updating", "cached", "cached_top2", ...
  double perplexity = 0;  // NaN where it does not apply (top-1 on a novel domain)
  double seconds = 0;
  double router_seconds = 0;     // router variants: the router's own share of `seconds`
  double experts_per_block = 0;  // router variants: expert forwards per block
};

struct MixtureRow {
  std::string domain;
  bool trained = false;
  int64_t tokens = 0;
  std::vector<MixtureVariant> variants;
  std::vector<double> cached_prior;    // (E), estimated on the domain's valid split
  std::vector<double> router_weights;  // (E), mean router top-k weights (with eval.router)
};

std::vector<MixtureRow> mixture_table(const ExpertScorer& scorer, const Config& config);

std::string format_mixture_table(const std::vector<MixtureRow>& rows);
std::string posterior_csv(const std::vector<MixtureRow>& rows,
                          const std::vector<std::string>& experts);
Json mixture_json(const std::vector<MixtureRow>& rows, const std::vector<std::string>& experts);

}  // namespace demix::eval
