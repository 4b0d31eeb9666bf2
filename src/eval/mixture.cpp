#include "demix/eval/mixture.h"

#include <yaml-cpp/yaml.h>

#include <cstdio>
#include <limits>
#include <numeric>

#include "demix/core/device.h"
#include "demix/core/error.h"
#include "demix/core/json.h"

namespace demix::eval {

at::Tensor expert_logprobs(model::GptImpl& model, const at::Tensor& inputs,
                           const at::Tensor& targets, const std::vector<int64_t>& experts) {
  const auto B = inputs.size(0), T = inputs.size(1), K = int64_t(experts.size());
  std::vector<int64_t> route;  // K blocks of B rows, already grouped by expert
  for (auto e : experts) route.insert(route.end(), size_t(B), e);
  const model::Routing routing(route, inputs.device());
  const auto logprobs =
      model.token_logprobs(inputs.repeat({K, 1}), targets.repeat({K, 1}), routing);
  return logprobs.view({K, B, T}).permute({1, 2, 0}).to(at::kDouble);  // (K*B, T) -> (B, T, K)
}

at::Tensor ExpertScorer::operator()(const at::Tensor& inputs, const at::Tensor& targets,
                                    const std::vector<int64_t>& experts) const {
  at::NoGradGuard no_grad;
  if (!groups_) return expert_logprobs(model_, inputs, targets, experts);
  const auto& placement = groups_->placement();
  const int W = placement.world_size();
  std::vector<std::vector<int64_t>> led(size_t(W), std::vector<int64_t>{});  // experts per leader
  for (auto e : experts) led[size_t(placement.leader_of(int(e)))].push_back(e);
  size_t capacity = 1;
  for (const auto& l : led) capacity = std::max(capacity, l.size());
  // Each rank scores the experts it leads, padded to a common width for the all-gather.
  const auto B = inputs.size(0), T = inputs.size(1);
  auto mine = at::zeros({B, T, int64_t(capacity)}, inputs.options().dtype(at::kDouble));
  const auto& own = led[size_t(groups_->rank())];
  if (!own.empty())
    mine.narrow(2, 0, int64_t(own.size())).copy_(expert_logprobs(model_, inputs, targets, own));
  std::vector<std::vector<at::Tensor>> gathered(1);
  for (int r = 0; r < W; ++r) gathered[0].push_back(at::empty_like(mine));
  std::vector<at::Tensor> input = {mine};
  groups_->world().allgather(gathered, input)->wait();
  std::vector<at::Tensor> columns;
  std::vector<size_t> taken(size_t(W), 0);
  for (auto e : experts) {
    const int r = placement.leader_of(int(e));
    columns.push_back(gathered[0][size_t(r)].select(2, int64_t(taken[size_t(r)]++)));
  }
  return at::stack(columns, 2);
}

namespace {

// The prior restricted to `experts` and renormalised, as log-probabilities: (K).
at::Tensor restricted_log_prior(const Prior& prior, const std::vector<int64_t>& experts) {
  std::vector<double> p;
  for (auto e : experts) p.push_back(prior.probs()[size_t(e)]);
  return Prior::fixed(p).log_probs();
}

// (B, K) over the chosen experts -> (B, E) with zero probability elsewhere, as log-probs.
at::Tensor widen(const at::Tensor& log_post, const std::vector<int64_t>& experts, int64_t E) {
  auto full =
      at::full({log_post.size(0), E}, -std::numeric_limits<double>::infinity(), log_post.options());
  full.index_copy_(1, at::tensor(experts, at::kLong).to(log_post.device()), log_post);
  return full;
}

std::vector<int64_t> chosen_experts(const Prior& prior, int64_t top_k) {
  const auto E = int64_t(prior.probs().size());
  return top_k_experts(prior.probs(), top_k > 0 ? top_k : E);
}

}  // namespace

MixtureScore score_mixture(const ExpertScorer& scorer, const data::EvalWindows& windows,
                           Prior& prior, const MixtureOptions& options) {
  at::NoGradGuard no_grad;
  auto& model = scorer.model();
  const bool was_training = model.is_training();
  model.eval();
  const auto device = model.wte->weight.device();
  const auto E = int64_t(prior.probs().size());
  const int64_t n = windows.inputs.size(0);
  MixtureScore result;
  auto nll = at::zeros({}, at::TensorOptions(device).dtype(at::kDouble));
  auto posterior_sum = at::zeros({E}, nll.options());
  for (int64_t start = 0; start < n; start += options.batch_size) {
    const int64_t rows = std::min(options.batch_size, n - start);
    const auto experts = chosen_experts(prior, options.top_k);  // re-chosen as the prior moves
    const auto logprobs =
        scorer(to_device(windows.inputs.narrow(0, start, rows), device),
               to_device(windows.targets.narrow(0, start, rows), device), experts);
    const auto log_prior = restricted_log_prior(prior, experts);
    const auto log_post = log_posterior(logprobs, log_prior, options.posterior);
    nll -= mixture_logprobs(logprobs, log_post).sum(at::kDouble);
    result.score.tokens += logprobs.size(0) * logprobs.size(1);
    const auto block =
        widen(log_block_posterior(logprobs, log_prior, options.posterior), experts, E);
    posterior_sum += block.exp().sum(0, /*keepdim=*/false, at::kDouble);
    prior.update(block);
  }
  model.train(was_training);
  result.score.nll_sum = nll.item<double>();
  const auto mean = (posterior_sum / double(n)).cpu();
  result.mean_block_posterior.assign(mean.data_ptr<double>(), mean.data_ptr<double>() + E);
  result.final_prior = prior.probs();
  return result;
}

Prior estimate_prior(const ExpertScorer& scorer, const data::EvalWindows& held_out, int64_t blocks,
                     double alpha, const MixtureOptions& options) {
  const auto n = std::min<int64_t>(blocks, held_out.inputs.size(0));
  const data::EvalWindows first{held_out.inputs.narrow(0, 0, n), held_out.targets.narrow(0, 0, n)};
  auto prior = Prior::updating(scorer.n_experts(), alpha);
  MixtureOptions all = options;
  all.top_k = 0;  // the estimate looks at every expert
  score_mixture(scorer, first, prior, all);
  return Prior::fixed(prior.probs());
}

at::Tensor block_posterior_trace(const ExpertScorer& scorer, const data::EvalWindows& windows,
                                 const Prior& prior, PosteriorKind kind) {
  at::NoGradGuard no_grad;
  scorer.model().eval();
  const auto device = scorer.model().wte->weight.device();
  std::vector<int64_t> all(prior.probs().size());
  std::iota(all.begin(), all.end(), 0);
  const auto logprobs = scorer(windows.inputs.narrow(0, 0, 1).to(device),
                               windows.targets.narrow(0, 0, 1).to(device), all);
  return log_posterior(logprobs, prior.log_probs(), kind)[0].exp().cpu();  // (T, E)
}

void write_prior(const std::string& path, const Prior& prior,
                 const std::vector<std::string>& experts, const std::string& source,
                 int64_t blocks) {
  JsonObject out;
  out.add("experts", experts)
      .add("prior", prior.probs())
      .add("source", source)
      .add("blocks", blocks);
  write_file_atomic(path, out.str() + "\n");
}

std::string format_prior(const std::vector<std::string>& experts,
                         const std::vector<double>& probs) {
  std::string out;
  char cell[96];
  for (size_t j = 0; j < experts.size(); ++j) {
    std::snprintf(cell, sizeof(cell), "%s%s %.3f", j ? ", " : "", experts[j].c_str(), probs[j]);
    out += cell;
  }
  return out;
}

Prior read_prior(const std::string& path, const std::vector<std::string>& experts) {
  YAML::Node node;
  try {
    node = YAML::LoadFile(path);
  } catch (const YAML::Exception& e) {
    throw Error(path + ": cannot read prior file: " + e.msg);
  }
  if (!node["experts"] || !node["prior"])
    throw Error(path + ": expected keys 'experts' and 'prior'");
  const auto names = node["experts"].as<std::vector<std::string>>();
  if (names != experts)
    throw Error(path + ": prior over experts [" + (names.empty() ? "" : names.front()) +
                ", ...] does not match the checkpoint's " + std::to_string(experts.size()) +
                " experts in order");
  return Prior::fixed(node["prior"].as<std::vector<double>>());
}

}  // namespace demix::eval
