#pragma once

// A sentencepiece tokenizer trained so that decode(encode(text)) == text byte for byte: identity
// normalisation, no dummy prefix, whitespace kept, bytes as a fallback for anything unseen. That
// makes bits-per-byte exact and lets models with different tokenizers be compared.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace demix {
struct Config;
}

namespace demix::data {

struct SplitInfo;

class Tokenizer {
 public:
  explicit Tokenizer(const std::string& model_path);  // throws Error if missing or unreadable
  ~Tokenizer();

  std::vector<uint32_t> encode(const std::string& text) const;
  // Appends the tokens of `text` to `out` (reusing a per-thread buffer: no allocation per call).
  void encode_append(std::string_view text, std::vector<uint32_t>& out) const;
  std::string decode(const std::vector<int64_t>& ids) const;
  int64_t vocab_size() const;
  int64_t eos_id() const;
  int64_t unk_id() const;
  std::string piece(int64_t id) const;                   // the vocabulary entry of `id`
  uint64_t fingerprint() const { return fingerprint_; }  // hash of the model file's bytes

 private:
  std::unique_ptr<sentencepiece::SentencePieceProcessor> processor_;
  uint64_t fingerprint_ = 0;
  int newline_id_ = -1;  // the byte piece of '\n' when no piece holds a newline, else -1
};

// Splits a corpus file into documents (separated by a line holding a single form feed).
std::vector<std::string> split_documents(const std::string& text);
// A text's tokens as the corpus token files hold them: each document encoded, then the
// end-of-text token. `info`, if given, receives the document count and the text's size.
std::vector<uint32_t> encode_documents(const Tokenizer& tokenizer, const std::string& text,
                                       SplitInfo* info = nullptr);
std::string read_file(const std::string& path);  // throws Error naming the path
// A text file's bytes; throws Error naming the path and offset unless they are valid UTF-8.
std::string read_text(const std::string& path);

// Trains config.tokenizer.model on an equal-sized sample of every training domain's train split,
// drawn from the sources as a stream: the documents of lowest hash, up to the per-domain budget,
// so the sample does not depend on the order of the files.
void train_tokenizer(const Config& config);

}  // namespace demix::data
