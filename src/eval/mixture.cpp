#include "demix/eval/mixture.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <numeric>

#include "demix/core/device.h"
#include "demix/core/error.h"
#include "demix/core/json.h"
#include "demix/core/strings.h"

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

std::vector<at::Tensor> ExpertScorer::rows(
    const at::Tensor& inputs, const at::Tensor& targets,
    const std::vector<std::vector<int64_t>>& experts_of_block) const {
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> out;
  if (groups_) {
    std::vector<int64_t> all;
    for (const auto& experts : experts_of_block)
      all.insert(all.end(), experts.begin(), experts.end());
    std::sort(all.begin(), all.end());
    all.erase(std::unique(all.begin(), all.end()), all.end());
    const auto logprobs = (*this)(inputs, targets, all);  // (B, T, U)
    for (size_t b = 0; b < experts_of_block.size(); ++b) {
      std::vector<int64_t> columns;
      for (auto e : experts_of_block[b])
        columns.push_back(std::lower_bound(all.begin(), all.end(), e) - all.begin());
      out.push_back(logprobs[int64_t(b)]
                        .index_select(1, at::tensor(columns, at::kLong).to(logprobs.device()))
                        .t());
    }
    return out;
  }
  std::vector<int64_t> block_of_row, route;
  for (size_t b = 0; b < experts_of_block.size(); ++b)
    for (auto e : experts_of_block[b]) {
      block_of_row.push_back(int64_t(b));
      route.push_back(e);
    }
  const auto index = at::tensor(block_of_row, at::kLong).to(inputs.device());
  const model::Routing routing(route, inputs.device());
  const auto logprobs =
      model_.token_logprobs(inputs.index_select(0, index), targets.index_select(0, index), routing)
          .to(at::kDouble);
  int64_t first = 0;
  for (const auto& experts : experts_of_block) {
    out.push_back(logprobs.narrow(0, first, int64_t(experts.size())));
    first += int64_t(experts.size());
  }
  return out;
}

namespace {

// The prior restricted to `experts` and renormalised, as log-probabilities: (K).
at::Tensor restricted_log_prior(const Prior& prior, const std::vector<int64_t>& experts) {
  std::vector<double> p;
  for (auto e : experts) p.push_back(prior.probs()[size_t(e)]);
  return Prior::fixed(p).log_probs();
}

at::Tensor expert_index(const std::vector<int64_t>& experts, const at::Device& device) {
  return at::tensor(experts, at::kLong).to(device);
}

// The block posterior over all E experts, (1, E) log-probs, from the one over the K experts that
// scored the block: their prior mass is shared out by the posterior over them, the experts that
// did not run keep their prior probability (the block says nothing about them).
at::Tensor widen(const at::Tensor& log_post, const Prior& prior,
                 const std::vector<int64_t>& experts) {
  auto full = prior.log_probs().to(log_post.device()).unsqueeze(0);
  double chosen_mass = 0;
  for (auto e : experts) chosen_mass += prior.probs()[size_t(e)];
  full.index_copy_(1, expert_index(experts, log_post.device()), log_post + std::log(chosen_mass));
  return full;
}

std::vector<int64_t> chosen_experts(const Prior& prior, int64_t top_k) {
  const auto E = int64_t(prior.probs().size());
  return top_k_experts(prior.probs(), top_k > 0 ? top_k : E);
}

// The experts' log-probs of one batch, (B, T, E), scored on demand: asking for a block's experts
// scores those not yet known for that block on every row from it to the end of the batch in one
// call, so a fixed choice of experts costs one call per batch and a top-k that moves with an
// updating prior costs one more call per change. Every rank asks for the same experts in the same
// order (the prior is the same everywhere), as ExpertScorer requires.
class BatchLogprobs {
 public:
  BatchLogprobs(const ExpertScorer& scorer, at::Tensor inputs, at::Tensor targets, int64_t E)
      : scorer_(scorer),
        inputs_(std::move(inputs)),
        targets_(std::move(targets)),
        known_from_(size_t(E), inputs_.size(0)),
        logprobs_(at::empty({inputs_.size(0), inputs_.size(1), E},
                            inputs_.options().dtype(at::kDouble))) {}

  // Block b's log-probs under `experts`: (1, T, K).
  at::Tensor block(int64_t b, const std::vector<int64_t>& experts) {
    std::vector<int64_t> missing;
    for (auto e : experts)
      if (known_from_[size_t(e)] > b) missing.push_back(e);
    if (!missing.empty()) {
      const auto rows = inputs_.size(0) - b;
      logprobs_.narrow(0, b, rows)
          .index_copy_(2, expert_index(missing, logprobs_.device()),
                       scorer_(inputs_.narrow(0, b, rows), targets_.narrow(0, b, rows), missing));
      for (auto e : missing) known_from_[size_t(e)] = b;
    }
    return logprobs_.narrow(0, b, 1).index_select(2, expert_index(experts, logprobs_.device()));
  }

 private:
  const ExpertScorer& scorer_;
  at::Tensor inputs_, targets_;
  std::vector<int64_t> known_from_;  // expert e is scored on rows known_from_[e] .. B-1
  at::Tensor logprobs_;
};

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
    BatchLogprobs batch(scorer, to_device(windows.inputs.narrow(0, start, rows), device),
                        to_device(windows.targets.narrow(0, start, rows), device), E);
    // Block by block: each block is mixed with the prior as it stood before it.
    for (int64_t b = 0; b < rows; ++b) {
      const auto experts = chosen_experts(prior, options.top_k);  // re-chosen as the prior moves
      const auto logprobs = batch.block(b, experts);
      const auto log_prior = restricted_log_prior(prior, experts);
      nll -= mixture_logprobs(logprobs, log_posterior(logprobs, log_prior, options.posterior))
                 .sum(at::kDouble);
      result.score.tokens += logprobs.size(1);
      const auto block =
          widen(log_block_posterior(logprobs, log_prior, options.posterior), prior, experts);
      posterior_sum += block[0].exp();
      prior.update(block);
    }
    if (options.progress) options.progress->advance(rows, rows * windows.inputs.size(1));
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
  write_json_file(
      path,
      {{"experts", experts}, {"prior", prior.probs()}, {"source", source}, {"blocks", blocks}});
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

namespace {

std::vector<std::string> prior_names(const std::string& path, const Json& names) {
  std::vector<std::string> out;
  if (names.is_array())
    for (const auto& name : names)
      if (name.is_string()) out.push_back(name.get<std::string>());
  if (!names.is_array() || out.size() != names.size())
    throw Error(path + ": 'experts' must be a list of expert names");
  return out;
}

std::vector<double> prior_values(const std::string& path, const Json& values) {
  if (!values.is_array()) throw Error(path + ": 'prior' must be a list of probabilities");
  std::vector<double> out;
  for (const auto& value : values) {
    const auto where = path + ": prior[" + std::to_string(out.size()) + "]";
    // not a number: refused below, by the value as written
    const double v = value.is_number() ? value.get<double>() : -1;
    if (!std::isfinite(v) || v < 0)
      throw Error(where + "=" + (value.is_string() ? value.get<std::string>() : value.dump()) +
                  ": expected a finite probability >= 0");
    out.push_back(v);
  }
  return out;
}

}  // namespace

Prior read_prior(const std::string& path, const std::vector<std::string>& experts) {
  const auto node = read_json_file(path, "prior file");
  if (!node.is_object() || !node.contains("experts") || !node.contains("prior"))
    throw Error(path + ": expected keys 'experts' and 'prior'");
  const auto names = prior_names(path, node.at("experts"));
  const auto values = prior_values(path, node.at("prior"));
  if (names.size() != values.size())
    throw Error(path + ": " + std::to_string(values.size()) + " prior values for " +
                std::to_string(names.size()) + " expert names");
  if (names != experts) {
    throw Error(path + ": prior over experts [" +
                (names.empty() ? std::string() : names.front() + ",...") + "] (" +
                std::to_string(names.size()) + ") does not match the checkpoint's experts [" +
                comma_list(experts) + "] in order");
  }
  // A sum far from 1 means another kind of file or a mistyped value (percentages, counts):
  // refused rather than renormalised; rounding in a hand-written prior is renormalised.
  const double total = std::accumulate(values.begin(), values.end(), 0.0);
  if (std::abs(total - 1) > kPriorSumTolerance)
    throw Error(path + ": prior values sum to " + std::to_string(total) + ", expected 1 (within " +
                std::to_string(kPriorSumTolerance) + ")");
  return Prior::fixed(values);
}

}  // namespace demix::eval
