#include "demix/eval/routed_mixture.h"

#include <ATen/ATen.h>

#include <chrono>
#include <limits>

#include "demix/core/device.h"
#include "demix/core/error.h"
#include "demix/core/strings.h"

namespace demix::eval {

at::Tensor route_windows(const cluster::ClusterRouter& router, const data::EvalWindows& windows,
                         const RouterOptions& options) {
  const auto inputs = windows.inputs.to(at::kLong).contiguous();
  const auto B = inputs.size(0), T = inputs.size(1);
  const auto E = int64_t(router.experts().size());
  auto out = at::full({B, T, E}, -std::numeric_limits<double>::infinity(), at::kDouble);
  auto* log_weights = out.data_ptr<double>();
  const auto* tokens = inputs.data_ptr<int64_t>();
  cluster::RouterContext context(router.featurizer());
  for (int64_t b = 0; b < B; ++b) {
    int64_t added = 0;  // inputs of block b already in the context
    for (int64_t start = 0; start < T; start += options.every) {
      // Position `start` predicts x_{bT+start+1}: the context ends at its input x_{bT+start}.
      context.add(tokens + b * T + added, size_t(start + 1 - added));
      added = start + 1;
      const auto features = context.features();
      const auto weights = cluster::top_k_weights(
          router.weights(features.data(), options.temperature), options.top_k);
      for (int64_t t = start; t < std::min(T, start + options.every); ++t)
        for (int64_t j = 0; j < E; ++j)
          if (weights[size_t(j)] > 0)
            log_weights[(b * T + t) * E + j] = std::log(weights[size_t(j)]);
    }
    context.add(tokens + b * T + added, size_t(T - added));
  }
  return out;
}

RoutedScore score_routed(const ExpertScorer& scorer, const cluster::ClusterRouter& router,
                         const data::EvalWindows& windows, const RouterOptions& options) {
  at::NoGradGuard no_grad;
  auto& model = scorer.model();
  const bool was_training = model.is_training();
  model.eval();
  const auto device = model.wte->weight.device();
  const auto started = std::chrono::steady_clock::now();
  const auto log_weights = route_windows(router, windows, options);
  RoutedScore result;
  result.router_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  const auto E = log_weights.size(2);
  const int64_t n = windows.inputs.size(0);
  // The experts each block runs: those with a weight at any of its positions.
  const auto chosen_mask = log_weights.isfinite().any(1).contiguous();  // (B, E)
  const auto chosen = chosen_mask.accessor<bool, 2>();
  auto nll = at::zeros({}, at::kDouble);
  int64_t forwards = 0;
  for (int64_t start = 0; start < n; start += options.batch_size) {
    const int64_t rows = std::min(options.batch_size, n - start);
    std::vector<std::vector<int64_t>> experts(static_cast<size_t>(rows));
    for (int64_t b = 0; b < rows; ++b) {
      for (int64_t j = 0; j < E; ++j)
        if (chosen[start + b][j]) experts[size_t(b)].push_back(j);
      forwards += int64_t(experts[size_t(b)].size());
    }
    const auto logprobs =
        scorer.rows(to_device(windows.inputs.narrow(0, start, rows), device),
                    to_device(windows.targets.narrow(0, start, rows), device), experts);
    for (int64_t b = 0; b < rows; ++b) {
      const auto index = at::tensor(experts[size_t(b)], at::kLong);
      const auto w = log_weights[start + b].index_select(1, index);  // (T, K)
      nll -= at::logsumexp(logprobs[size_t(b)].cpu().t() + w, 1).sum();
      result.score.tokens += w.size(0);
    }
    if (options.progress) options.progress->advance(rows, rows * windows.inputs.size(1));
  }
  model.train(was_training);
  result.score.nll_sum = nll.item<double>();
  const auto mean =
      (log_weights.exp().sum(1).sum(0) / double(log_weights.size(0) * log_weights.size(1)))
          .contiguous();
  result.mean_weights.assign(mean.data_ptr<double>(), mean.data_ptr<double>() + E);
  result.experts_per_block = double(forwards) / double(n);
  return result;
}

cluster::ClusterRouter load_router(const std::string& path, const std::vector<std::string>& experts,
                                   int64_t vocab_size) {
  auto router = cluster::ClusterRouter::load(path);
  if (router.featurizer().vocab_size() != vocab_size)
    throw Error(path + ": a router over a vocabulary of " +
                std::to_string(router.featurizer().vocab_size()) +
                " tokens, expected the model's " + std::to_string(vocab_size) +
                " (a router of another tokenizer?)");
  if (router.experts() != experts) {
    throw Error(path + ": a router over experts [" + comma_list(router.experts()) +
                "], expected the model's [" + comma_list(experts) + "] in order");
  }
  return router;
}

}  // namespace demix::eval
