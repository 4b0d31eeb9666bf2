#pragma once

// Perplexity per domain and split with known-domain top-1 routing: each domain's text goes
// through its own expert (DEMix paper, sec. 4.1). Also reported in bits per byte of the UTF-8
// text, which does not depend on the tokenizer.

#include <cstdint>
#include <string>
#include <vector>

#include "demix/core/config.h"
#include "demix/core/json.h"
#include "demix/data/token_file.h"
#include "demix/model/gpt.h"

namespace demix::eval {

struct SplitScore {
  std::string domain, split;
  int64_t tokens = 0;          // predicted tokens
  double nll_sum = 0;          // nats
  int64_t hits = 0;            // tokens whose most likely prediction is right
  double bytes_per_token = 0;  // of the split's text
  double loss() const { return nll_sum / double(tokens); }
  double perplexity() const;
  double bits_per_byte() const;
  double accuracy() const { return double(hits) / double(tokens); }  // next-token accuracy
};

// Scores `file` routed as domain `route` in consecutive windows of the model's block size.
SplitScore score_split(model::GptImpl& model, const data::TokenFile& file, int64_t route,
                       int64_t max_tokens, int64_t batch_size);

// Every training domain through its expert (a dense model: also the eval domains), for each
// configured split.
std::vector<SplitScore> evaluate(model::GptImpl& model, const Config& config,
                                 const std::vector<std::string>& splits, int64_t max_tokens);

std::string format_table(const std::vector<SplitScore>& scores);
JsonObject to_json(const std::vector<SplitScore>& scores);

}  // namespace demix::eval
