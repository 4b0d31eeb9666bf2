#include "demix/data/tokenizer.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "demix/core/config.h"
#include "demix/core/error.h"
#include "demix/core/hash.h"

namespace demix::data {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open");
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string read_text(const std::string& path) {
  auto text = read_file(path);
  const auto* bytes = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  for (size_t i = 0; i < n;) {  // well-formed UTF-8 (RFC 3629): no overlongs, no surrogates
    const unsigned char c = bytes[i];
    size_t len = c < 0x80           ? 1
                 : (c >> 5) == 0x6  ? 2
                 : (c >> 4) == 0xe  ? 3
                 : (c >> 3) == 0x1e ? 4
                                    : 0;
    bool ok = len > 0 && i + len <= n && !(len == 2 && c < 0xc2);
    for (size_t k = 1; ok && k < len; ++k) ok = (bytes[i + k] & 0xc0) == 0x80;
    if (ok && len == 3) {
      const unsigned char c1 = bytes[i + 1];
      ok = !(c == 0xe0 && c1 < 0xa0) && !(c == 0xed && c1 >= 0xa0);
    }
    if (ok && len == 4) {
      const unsigned char c1 = bytes[i + 1];
      ok = !(c == 0xf0 && c1 < 0x90) && !(c == 0xf4 && c1 >= 0x90) && c <= 0xf4;
    }
    if (!ok) {
      char hex[8];
      std::snprintf(hex, sizeof(hex), "0x%02x", c);
      throw Error(path + ": not UTF-8 text (invalid byte " + hex + " at offset " +
                  std::to_string(i) + ")");
    }
    i += len;
  }
  return text;
}

std::vector<uint16_t> encode_documents(const Tokenizer& tokenizer, const std::string& text,
                                       uint64_t* documents) {
  std::vector<uint16_t> tokens;
  const auto docs = split_documents(text);
  for (const auto& doc : docs) {
    const auto ids = tokenizer.encode(doc);
    tokens.insert(tokens.end(), ids.begin(), ids.end());
    tokens.push_back(uint16_t(tokenizer.eos_id()));
  }
  if (documents) *documents = docs.size();
  return tokens;
}

std::vector<std::string> split_documents(const std::string& text) {
  static const std::string kSeparator = "\n\f\n";
  std::vector<std::string> docs;
  size_t start = 0;
  while (start < text.size()) {
    const auto end = text.find(kSeparator, start);
    if (end == std::string::npos) {
      docs.push_back(text.substr(start));
      break;
    }
    docs.push_back(text.substr(start, end - start));
    start = end + kSeparator.size();
  }
  return docs;
}

Tokenizer::Tokenizer(const std::string& model_path)
    : processor_(std::make_unique<sentencepiece::SentencePieceProcessor>()) {
  const auto bytes = read_file(model_path);
  const auto status = processor_->LoadFromSerializedProto(bytes);
  if (!status.ok()) throw Error(model_path + ": not a sentencepiece model: " + status.ToString());
  fingerprint_ = hash_string(0, bytes);
}

Tokenizer::~Tokenizer() = default;

std::vector<uint16_t> Tokenizer::encode(const std::string& text) const {
  std::vector<int> ids;
  const auto status = processor_->Encode(text, &ids);
  TORCH_CHECK(status.ok(), "sentencepiece encode failed: ", status.ToString());
  return std::vector<uint16_t>(ids.begin(), ids.end());
}

std::string Tokenizer::decode(const std::vector<int64_t>& ids) const {
  std::string text;
  const auto status = processor_->Decode(std::vector<int>(ids.begin(), ids.end()), &text);
  TORCH_CHECK(status.ok(), "sentencepiece decode failed: ", status.ToString());
  return text;
}

int64_t Tokenizer::vocab_size() const { return processor_->GetPieceSize(); }
int64_t Tokenizer::eos_id() const { return processor_->eos_id(); }
int64_t Tokenizer::unk_id() const { return processor_->unk_id(); }
std::string Tokenizer::piece(int64_t id) const { return processor_->IdToPiece(int(id)); }

void train_tokenizer(const Config& config) {
  namespace fs = std::filesystem;
  const auto& tc = config.tokenizer;
  const fs::path model(tc.model);
  fs::create_directories(model.parent_path());
  // sentencepiece reads one sentence per line and skips overlong lines, so the sample is written
  // line by line: whole documents from the (already shuffled) train split until the budget is met.
  const fs::path sample = model.parent_path() / (model.stem().string() + ".sample.txt");
  {
    std::ofstream out(sample, std::ios::trunc);
    for (const auto& domain : config.data.domains) {
      const auto path = config.data.corpus + "/" + domain + "/train.txt";
      int64_t taken = 0;
      for (const auto& doc : split_documents(read_text(path))) {
        if (taken >= tc.sample_bytes_per_domain) break;
        std::istringstream lines(doc);
        for (std::string line; std::getline(lines, line);) {
          if (line.empty() || line.size() > 4000) continue;
          out << line << '\n';
          taken += int64_t(line.size()) + 1;
        }
      }
    }
  }
  const fs::path prefix = model.parent_path() / model.stem();
  std::ostringstream args;
  args << "--input=" << sample.string() << " --model_prefix=" << prefix.string()
       << " --model_type=" << to_string(tc.type) << " --vocab_size=" << config.model.vocab_size
       << " --character_coverage=0.9999 --byte_fallback=true --normalization_rule_name=identity"
       << " --add_dummy_prefix=false --remove_extra_whitespaces=false"
       << " --allow_whitespace_only_pieces=true --split_digits=true --max_sentencepiece_length=16"
       << " --unk_id=0 --eos_id=1 --bos_id=-1 --pad_id=-1 --num_threads=2 --minloglevel=1";
  const auto status = sentencepiece::SentencePieceTrainer::Train(args.str());
  if (!status.ok()) throw Error(tc.model + ": tokenizer training failed: " + status.ToString());
  const fs::path written = prefix.string() + ".model";
  if (written != model) fs::rename(written, model);
  fs::remove(prefix.string() + ".vocab");
  fs::remove(sample);
}

}  // namespace demix::data
