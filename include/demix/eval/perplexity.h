#pragma once

// Perplexity per domain and split with known-domain top-1 routing: each domain's text goes
// through its own expert (DEMix paper, sec. 4.1). Also reported in bits per byte of the UTF-8
// text, which does not depend on the tokenizer.

#include <cstdint>
#include <string>
#include <vector>

#include "demix/core/config.h"
#include "demix/core/json.h"
#include "demix/data/domain_batcher.h"
#include "demix/data/token_split.h"
#include "demix/data/tokenizer.h"
#include "demix/eval/progress.h"
#include "demix/model/gpt.h"

namespace demix::eval {

struct SplitScore {
  std::string domain, split;
  int64_t tokens = 0;  // predicted tokens
  double nll_sum = 0;  // nats
  int64_t hits = 0;    // tokens whose most likely prediction is right
  int64_t bytes = 0;   // UTF-8 bytes of the predicted tokens' text (0: not counted)
  double loss() const { return nll_sum / double(tokens); }
  double perplexity() const;
  double bits_per_byte() const;  // NaN unless `bytes` was counted
  double accuracy() const { return double(hits) / double(tokens); }  // next-token accuracy
};

// The UTF-8 bytes of text each token stands for, so that bits per byte divide by the bytes of
// exactly the scored text: a piece's own bytes (its U+2581 is one space), one byte for a
// byte-fallback piece, and for end-of-text the separator split_documents removed. Exact because
// the tokenizer round-trips byte for byte; checked against the whole sequence's text size.
class TokenBytes {
 public:
  explicit TokenBytes(const data::Tokenizer& tokenizer);
  // Bytes of tokens[1 .. scored] of `split`, the targets of its first evaluation windows; its
  // tokens must encode the text bytes its info says.
  int64_t scored(const data::TokenSplit& split, int64_t scored) const;

 private:
  std::vector<int64_t> bytes_;  // per token id
};

// Scores `windows` routed as domain `route`, batch by batch, advancing `progress` if given.
// Counts no bytes.
SplitScore score_windows(model::GptImpl& model, const data::EvalWindows& windows, int64_t route,
                         int64_t batch_size, Progress* progress = nullptr);

// Scores `split` routed as domain `route` in consecutive windows of the model's block size.
SplitScore score_split(model::GptImpl& model, const data::TokenSplit& split, int64_t route,
                       int64_t max_tokens, int64_t batch_size);

// Every training domain through its expert (a dense model: also the eval domains), for each
// configured split.
std::vector<SplitScore> evaluate(model::GptImpl& model, const Config& config,
                                 const std::vector<std::string>& splits, int64_t max_tokens);

std::string format_table(const std::vector<SplitScore>& scores);
Json to_json(const std::vector<SplitScore>& scores);

}  // namespace demix::eval
