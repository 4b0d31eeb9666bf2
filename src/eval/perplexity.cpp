#include "demix/eval/perplexity.h"

#include <cmath>
#include <cstdio>

#include "demix/core/device.h"
#include "demix/data/corpus.h"
#include "demix/data/domain_batcher.h"

namespace demix::eval {

double SplitScore::perplexity() const { return std::exp(loss()); }
double SplitScore::bits_per_byte() const { return loss() / std::log(2.0) / bytes_per_token; }

SplitScore score_split(model::GptImpl& model, const data::TokenFile& file, int64_t route,
                       int64_t max_tokens, int64_t batch_size) {
  torch::NoGradGuard no_grad;
  const auto device = model.wte->weight.device();
  const auto windows = data::eval_windows(file, model.config().block_size, max_tokens);
  SplitScore score;
  // Summed on the device: the host reads the totals once, after the last batch.
  auto nll = torch::zeros({}, torch::TensorOptions(device).dtype(torch::kDouble));
  auto hits = torch::zeros({}, nll.options().dtype(torch::kLong));
  const int64_t n = windows.inputs.size(0);
  for (int64_t start = 0; start < n; start += batch_size) {
    const int64_t rows = std::min(batch_size, n - start);
    const model::Routing routing(std::vector<int64_t>(size_t(rows), route), device);
    torch::Tensor right;
    auto logprobs = model.token_logprobs(to_device(windows.inputs.narrow(0, start, rows), device),
                                         to_device(windows.targets.narrow(0, start, rows), device),
                                         routing, &right);
    nll -= logprobs.sum(torch::kDouble);
    hits += right.sum();
    score.tokens += logprobs.numel();
  }
  score.nll_sum = nll.item<double>();
  score.hits = hits.item<int64_t>();
  score.bytes_per_token = double(file.header().text_bytes) / double(file.size());
  return score;
}

std::vector<SplitScore> evaluate(model::GptImpl& model, const Config& config,
                                 const std::vector<std::string>& splits, int64_t max_tokens) {
  const bool was_training = model.is_training();
  model.eval();
  std::vector<std::pair<std::string, int64_t>> targets;  // (domain, route)
  for (size_t d = 0; d < config.data.domains.size(); ++d)
    targets.emplace_back(config.data.domains[d], int64_t(d));
  if (config.n_experts() == 0 && !config.model.domain_token)
    for (const auto& d : config.data.eval_domains) targets.emplace_back(d, 0);
  std::vector<SplitScore> scores;
  for (const auto& split : splits) {
    for (const auto& [domain, route] : targets) {
      const auto file = data::open_split(config, domain, split);
      auto score = score_split(model, *file, route, max_tokens, config.eval.batch_size);
      score.domain = domain;
      score.split = split;
      scores.push_back(score);
    }
  }
  model.train(was_training);
  return scores;
}

std::string format_table(const std::vector<SplitScore>& scores) {
  std::string out =
      "| split | domain | tokens | loss | perplexity | bits/byte |\n"
      "|---|---|---:|---:|---:|---:|\n";
  std::vector<std::pair<std::string, std::pair<double, int64_t>>> mean_loss;  // in split order
  char line[256];
  for (const auto& s : scores) {
    std::snprintf(line, sizeof(line), "| %s | %s | %lld | %.4f | %.2f | %.4f |\n", s.split.c_str(),
                  s.domain.c_str(), static_cast<long long>(s.tokens), s.loss(), s.perplexity(),
                  s.bits_per_byte());
    out += line;
    if (mean_loss.empty() || mean_loss.back().first != s.split) mean_loss.push_back({s.split, {}});
    mean_loss.back().second.first += s.loss();  // (sum of losses, count)
    mean_loss.back().second.second += 1;
  }
  for (const auto& [split, acc] : mean_loss) {
    const double loss = acc.first / double(acc.second);
    std::snprintf(line, sizeof(line), "| %s | **mean over domains** | | %.4f | %.2f | |\n",
                  split.c_str(), loss, std::exp(loss));
    out += line;
  }
  return out;
}

JsonObject to_json(const std::vector<SplitScore>& scores) {
  std::vector<JsonObject> rows;
  for (const auto& s : scores) {
    JsonObject row;
    row.add("split", s.split)
        .add("domain", s.domain)
        .add("tokens", s.tokens)
        .add("loss", s.loss())
        .add("perplexity", s.perplexity())
        .add("bits_per_byte", s.bits_per_byte())
        .add("accuracy", s.accuracy());
    rows.push_back(row);
  }
  JsonObject out;
  out.add_array("scores", rows);
  return out;
}

}  // namespace demix::eval
