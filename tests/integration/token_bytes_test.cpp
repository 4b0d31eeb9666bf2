// Bits per byte divide by the bytes of exactly the scored text: TokenBytes against texts whose
// byte counts are known by construction, and against every corpus token file's header.

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "demix/core/config.h"
#include "demix/core/error.h"
#include "demix/data/corpus.h"
#include "demix/data/tokenizer.h"
#include "demix/eval/perplexity.h"

namespace demix {
namespace {

const std::string kSeparator = "\n\f\n";  // between documents in the corpus text files

TEST(TokenBytesTest, CountsTheBytesOfExactlyTheScoredText) {
  const auto config = load_config("configs/tiny.yaml", {});
  const data::Tokenizer tokenizer(config.tokenizer.model);
  const eval::TokenBytes token_bytes(tokenizer);
  // Multi-byte characters, and characters the vocabulary lacks (byte-fallback pieces).
  const std::vector<std::string> docs = {"In the beginning was the word.\n",
                                         "caf\u00e9 \u20ac 12345 \U0001D11E \u4e2d\u6587\n",
                                         "def f(x):\n    return x  \n"};
  for (bool trailing_separator : {false, true}) {
    std::string text;
    std::vector<uint32_t> tokens;
    std::vector<int64_t> end_of_text;  // the index of each document's end-of-text token
    for (size_t i = 0; i < docs.size(); ++i) {
      text += docs[i];
      if (i + 1 < docs.size() || trailing_separator) text += kSeparator;
      const auto ids = tokenizer.encode(docs[i]);
      tokens.insert(tokens.end(), ids.begin(), ids.end());
      tokens.push_back(uint32_t(tokenizer.eos_id()));
      end_of_text.push_back(int64_t(tokens.size()) - 1);
    }
    ASSERT_EQ(data::split_documents(text), docs);
    const auto size = int64_t(tokens.size());
    // Token 0 is never predicted: its bytes are not scored.
    const auto first = int64_t(tokenizer.decode({tokens[0]}).size());
    auto split_of = [&](uint64_t text_bytes) {
      data::SplitInfo info;
      info.text_bytes = text_bytes;
      return std::make_unique<data::TokenSplit>(tokens, info, "text");
    };
    const auto split = split_of(text.size());
    auto scored = [&](int64_t n) { return token_bytes.scored(*split, n); };
    const auto sep = int64_t(kSeparator.size());
    EXPECT_EQ(scored(end_of_text[0]), int64_t(docs[0].size()) + sep - first);
    EXPECT_EQ(scored(end_of_text[1]), int64_t(docs[0].size() + docs[1].size()) + 2 * sep - first);
    EXPECT_EQ(scored(size - 1), int64_t(text.size()) - first) << trailing_separator;
    EXPECT_THROW(token_bytes.scored(*split_of(text.size() + 7), 1), Error);
  }
}

TEST(TokenBytesTest, AgreesWithEveryCorpusTokenFile) {
  const auto config = load_config("configs/tiny.yaml", {});
  const eval::TokenBytes token_bytes{data::Tokenizer(config.tokenizer.model)};
  for (const auto& domain : config.all_domains()) {
    const auto file = data::open_split(config, domain, "test");
    const auto size = int64_t(file->size());
    int64_t all = 0;  // the whole text but token 0's bytes
    EXPECT_NO_THROW(all = token_bytes.scored(*file, size - 1)) << domain;
    EXPECT_LT(all, int64_t(file->info().text_bytes)) << domain;
    EXPECT_GT(all, int64_t(file->info().text_bytes) - 64) << domain;
  }
}

}  // namespace
}  // namespace demix
