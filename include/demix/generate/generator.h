#pragma once

// Text generation with a KV cache. The next-token distribution is one expert's (known domain) or,
// for text of unknown domain, the experts' ensemble weighted by the domain posterior of the text
// so far (prompt and generated tokens), updated after every token as in evaluation:
//   log p(x | x_<t) = logsumexp_j (log P(D=j | x_<t) + log p_j(x | x_<t)).
// Mixing runs every expert's path as one row of a batch of E, each with its own cache.

#include <ATen/ATen.h>

#include <optional>
#include <vector>

#include "demix/cluster/router.h"
#include "demix/eval/domain_posterior.h"
#include "demix/generate/sampler.h"
#include "demix/model/gpt.h"

namespace demix::generate {

struct ExpertChoice {
  std::optional<int64_t> domain;  // route every token to this expert (or the dense model's FF)
  at::Tensor log_prior;           // else mix all experts: log P(D=j) before any token, (E)
  eval::PosteriorKind posterior = eval::PosteriorKind::kPrefix;
};

struct Generation {
  std::vector<int64_t> tokens;                 // the generated tokens, without the prompt
  std::vector<std::vector<double>> posterior;  // mixing: P(D | x_<t) before each generated token
};

// Generates up to `max_tokens` after `prompt` (not empty), stopping early at `eos` (if >= 0) or
// when the context is full.
Generation generate(model::GptImpl& model, const std::vector<int64_t>& prompt,
                    const ExpertChoice& experts, int64_t max_tokens, Sampler& sampler,
                    int64_t eos = -1);

// The cluster router's choice instead of the posterior: before the first generated token and
// then every `every` tokens, the router reads the text so far and picks the top_k experts; only
// those run (a newly chosen expert first reads the whole text into its own cache). `posterior`
// of the result holds the router weights before each generated token.
struct RoutedChoice {
  const cluster::ClusterRouter* router = nullptr;
  int64_t top_k = 2;
  int64_t every = 32;
  double temperature = 0.1;
};
Generation generate_routed(model::GptImpl& model, const std::vector<int64_t>& prompt,
                           const RoutedChoice& choice, int64_t max_tokens, Sampler& sampler,
                           int64_t eos = -1);

}  // namespace demix::generate
