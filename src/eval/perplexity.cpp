#include "demix/eval/perplexity.h"

#include <cmath>
#include <cstdio>

#include "demix/core/device.h"
#include "demix/core/error.h"
#include "demix/data/corpus.h"
#include "demix/data/domain_batcher.h"

namespace demix::eval {

double SplitScore::perplexity() const { return std::exp(loss()); }
double SplitScore::bits_per_byte() const {
  return bytes > 0 ? nll_sum / std::log(2.0) / double(bytes) : std::nan("");
}

namespace {
const std::string kSpace = "\xe2\x96\x81";  // U+2581, sentencepiece's space
constexpr auto kSeparatorBytes = int64_t(data::kDocumentSeparator.size());

bool is_byte_piece(const std::string& piece) {  // "<0x41>"
  return piece.size() == 6 && piece.rfind("<0x", 0) == 0 && piece.back() == '>';
}
}  // namespace

TokenBytes::TokenBytes(const data::Tokenizer& tokenizer) {
  for (int64_t id = 0; id < tokenizer.vocab_size(); ++id) {
    const auto piece = tokenizer.piece(id);
    int64_t n = 0;
    if (id == tokenizer.eos_id())
      n = kSeparatorBytes;
    else if (is_byte_piece(piece))
      n = 1;
    else
      for (size_t i = 0; i < piece.size(); ++n)
        i += piece.compare(i, kSpace.size(), kSpace) == 0 ? kSpace.size() : 1;
    bytes_.push_back(n);
  }
}

int64_t TokenBytes::scored(const data::TokenSplit& split, int64_t scored) const {
  const auto size = int64_t(split.size());
  std::vector<int64_t> tokens;
  auto sum = [&](int64_t from, int64_t to) {
    int64_t total = 0;
    for (int64_t start = from; start < to; start += 1 << 16) {
      tokens.resize(size_t(std::min<int64_t>(1 << 16, to - start)));
      split.read(uint64_t(start), tokens.size(), tokens.data());
      for (const auto token : tokens) {
        if (token >= int64_t(bytes_.size()))
          throw Error(split.path() + ": token id " + std::to_string(token) +
                      " is outside the tokenizer's vocabulary");
        total += bytes_[size_t(token)];
      }
    }
    return total;
  };
  // The last end-of-text stands for a separator only when the text ends with one.
  const auto text_bytes = int64_t(split.info().text_bytes);
  const int64_t excess = sum(0, size) - text_bytes;
  if (excess != 0 && excess != kSeparatorBytes)
    throw Error(split.path() + ": its tokens stand for " + std::to_string(excess + text_bytes) +
                " bytes of text, its header says " + std::to_string(text_bytes) +
                " (encoded with another tokenizer? run demix data again)");
  return sum(1, scored + 1) - (scored + 1 == size ? excess : 0);
}

SplitScore score_windows(model::GptImpl& model, const data::EvalWindows& windows, int64_t route,
                         int64_t batch_size, Progress* progress) {
  torch::NoGradGuard no_grad;
  const auto device = model.wte->weight.device();
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
    if (progress) progress->advance(rows, logprobs.numel());
  }
  score.nll_sum = nll.item<double>();
  score.hits = hits.item<int64_t>();
  return score;
}

SplitScore score_split(model::GptImpl& model, const data::TokenSplit& split, int64_t route,
                       int64_t max_tokens, int64_t batch_size) {
  return score_windows(model, data::eval_windows(split, model.config().block_size, max_tokens),
                       route, batch_size);
}

std::vector<SplitScore> evaluate(model::GptImpl& model, const Config& config,
                                 const std::vector<std::string>& splits, int64_t max_tokens) {
  const bool was_training = model.is_training();
  model.eval();
  const TokenBytes token_bytes{data::Tokenizer(config.tokenizer.model)};
  std::vector<std::pair<std::string, int64_t>> routes;  // (domain, route)
  for (size_t d = 0; d < config.data.domains.size(); ++d)
    routes.emplace_back(config.data.domains[d], int64_t(d));
  if (config.n_experts() == 0 && !config.model.domain_token)
    for (const auto& d : config.data.eval_domains) routes.emplace_back(d, 0);
  struct Part {
    SplitScore score;
    int64_t route;
    std::unique_ptr<data::TokenSplit> split;
  };
  auto windows_of = [&](const Part& part) {
    return data::eval_windows(*part.split, model.config().block_size, max_tokens);
  };
  std::vector<Part> parts;  // every split of every domain, opened first for the progress total
  int64_t blocks = 0;
  for (const auto& split : splits)
    for (const auto& [domain, route] : routes) {
      parts.push_back({{domain, split}, route, data::open_split(config, domain, split)});
      blocks += windows_of(parts.back()).inputs.size(0);  // one split's windows at a time
    }
  Progress progress("eval", blocks);
  std::vector<SplitScore> scores;
  for (auto& part : parts) {
    progress.stage(part.score.domain + "/" + part.score.split);
    auto score =
        score_windows(model, windows_of(part), part.route, config.eval.batch_size, &progress);
    score.bytes = token_bytes.scored(*part.split, score.tokens);
    score.domain = part.score.domain;
    score.split = part.score.split;
    scores.push_back(score);
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

Json to_json(const std::vector<SplitScore>& scores) {
  Json rows = Json::array();
  for (const auto& s : scores)
    rows.push_back({{"split", s.split},
                    {"domain", s.domain},
                    {"tokens", s.tokens},
                    {"loss", s.loss()},
                    {"perplexity", s.perplexity()},
                    {"bits_per_byte", s.bits_per_byte()},
                    {"accuracy", s.accuracy()}});
  return {{"scores", rows}};
}

}  // namespace demix::eval
