#include "demix/generate/generator.h"

#include <cmath>
#include <optional>

#include "demix/core/error.h"
#include "demix/model/kv_cache.h"

namespace demix::generate {

namespace {

void check_prompt(const model::GptImpl& model, const std::vector<int64_t>& prompt) {
  if (prompt.empty()) throw Error("generate: the prompt encodes to no tokens");
  const auto context = model.config().block_size;
  if (int64_t(prompt.size()) > context)
    throw Error("generate: the prompt has " + std::to_string(prompt.size()) +
                " tokens, more than the model's context of " + std::to_string(context));
}

// Each row's next-token log-probabilities after `tokens` (rows, n) go through the cache: (rows, V)
// float64 on the CPU, for the sampler.
at::Tensor next_logprobs(model::GptImpl& model, const at::Tensor& tokens,
                         const model::Routing& routing, model::KvCache& cache) {
  const auto logits = model.forward(tokens, routing, cache);
  return at::log_softmax(logits.select(1, logits.size(1) - 1).to(torch::kDouble), -1).cpu();
}

}  // namespace

Generation generate(model::GptImpl& model, const std::vector<int64_t>& prompt,
                    const ExpertChoice& experts, int64_t max_tokens, Sampler& sampler,
                    int64_t eos) {
  check_prompt(model, prompt);
  const auto context = model.config().block_size;
  torch::NoGradGuard no_grad;
  model.eval();
  const auto device = model.wte->weight.device();
  const bool mixing = !experts.domain;
  const int64_t rows = mixing ? experts.log_prior.size(0) : 1;
  std::vector<int64_t> route(size_t(rows), experts.domain.value_or(0));
  if (mixing)
    for (int64_t j = 0; j < rows; ++j) route[size_t(j)] = j;
  const model::Routing routing(route, device);
  model::KvCache cache(model.context_length());

  // Every row reads the same tokens; row j goes through expert j.
  auto tokens = torch::tensor(prompt, torch::kLong).to(device).unsqueeze(0).expand({rows, -1});
  auto logprobs = at::log_softmax(model.forward(tokens, routing, cache).to(torch::kDouble), -1);
  // log p_j(x_s | x_<s) of every token scored so far, (n, E): the prompt's after the first, then
  // each generated one. The posterior is the evaluator's block posterior over them.
  auto scored = torch::empty({0, rows}, torch::kDouble);
  if (mixing && prompt.size() > 1) {
    const auto targets =
        torch::tensor(std::vector<int64_t>(prompt.begin() + 1, prompt.end()), torch::kLong)
            .to(device);
    scored = logprobs.narrow(1, 0, int64_t(prompt.size()) - 1)
                 .gather(2, targets.view({1, -1, 1}).expand({rows, -1, 1}))
                 .squeeze(2)
                 .t()
                 .cpu();
  }
  auto next = logprobs.select(1, logprobs.size(1) - 1).cpu();  // (rows, V)

  Generation out;
  for (int64_t step = 0; step < max_tokens && int64_t(prompt.size()) + step < context; ++step) {
    at::Tensor dist = next[0];
    if (mixing) {
      const auto log_post =  // log P(D=j | x_<t), (E); the prior before any scored token
          scored.size(0) == 0 ? at::log_softmax(experts.log_prior.to(torch::kDouble), 0)
                              : eval::log_block_posterior(scored.unsqueeze(0), experts.log_prior,
                                                          experts.posterior)[0];
      dist = eval::mixture_logprobs(next.t(), log_post);  // (V)
      const auto post = log_post.exp().contiguous();
      out.posterior.emplace_back(post.data_ptr<double>(), post.data_ptr<double>() + rows);
    }
    const int64_t token = sampler.next(dist);
    out.tokens.push_back(token);
    if (token == eos) break;
    if (mixing) scored = torch::cat({scored, next.select(1, token).unsqueeze(0)});
    next = next_logprobs(model, torch::full({rows, 1}, token, torch::kLong).to(device), routing,
                         cache);
  }
  return out;
}

Generation generate_routed(model::GptImpl& model, const std::vector<int64_t>& prompt,
                           const RoutedChoice& choice, int64_t max_tokens, Sampler& sampler,
                           int64_t eos) {
  check_prompt(model, prompt);
  const auto context_length = model.config().block_size;
  torch::NoGradGuard no_grad;
  model.eval();
  const auto device = model.wte->weight.device();
  std::vector<int64_t> text = prompt;
  cluster::RouterContext context(choice.router->featurizer());
  context.add(prompt.data(), prompt.size());

  std::vector<int64_t> experts;  // the experts running now, one row each
  std::vector<double> weights;   // (E), zero outside `experts`
  std::optional<model::Routing> routing;
  std::optional<model::KvCache> cache;
  at::Tensor next, log_weights;  // (K, V) next-token log-probs of each running expert; (K)
  Generation out;
  for (int64_t step = 0; step < max_tokens && int64_t(text.size()) < context_length; ++step) {
    if (step % choice.every == 0) {
      const auto features = context.features();
      weights = cluster::top_k_weights(choice.router->weights(features.data(), choice.temperature),
                                       choice.top_k);
      std::vector<int64_t> chosen;
      std::vector<double> chosen_log_weights;
      for (size_t j = 0; j < weights.size(); ++j)
        if (weights[j] > 0) {
          chosen.push_back(int64_t(j));
          chosen_log_weights.push_back(std::log(weights[j]));
        }
      log_weights = torch::tensor(chosen_log_weights, torch::kDouble).unsqueeze(1);
      if (chosen != experts) {  // new experts read the whole text into fresh caches
        experts = chosen;
        routing.emplace(experts, device);
        cache.emplace(model.context_length());
        const auto rows = int64_t(experts.size());
        const auto tokens =
            torch::tensor(text, torch::kLong).to(device).unsqueeze(0).expand({rows, -1});
        next = next_logprobs(model, tokens, *routing, *cache);
      }
    }
    out.posterior.push_back(weights);
    const int64_t token = sampler.next(at::logsumexp(next + log_weights, 0));
    out.tokens.push_back(token);
    text.push_back(token);
    context.add(token);
    if (token == eos) break;
    next = next_logprobs(model,
                         torch::full({int64_t(experts.size()), 1}, token, torch::kLong).to(device),
                         *routing, *cache);
  }
  return out;
}

}  // namespace demix::generate
