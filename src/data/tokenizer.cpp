#include "demix/data/tokenizer.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <queue>
#include <sstream>

#include "demix/core/config.h"
#include "demix/core/error.h"
#include "demix/core/hash.h"
#include "demix/data/corpus.h"

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
  check_utf8(text, path);
  return text;
}

std::vector<uint32_t> encode_documents(const Tokenizer& tokenizer, const std::string& text,
                                       SplitInfo* info) {
  std::vector<uint32_t> tokens;
  const auto docs = split_documents(text);
  for (const auto& doc : docs) {
    const auto ids = tokenizer.encode(doc);
    tokens.insert(tokens.end(), ids.begin(), ids.end());
    tokens.push_back(uint32_t(tokenizer.eos_id()));
  }
  if (info) {
    info->documents = docs.size();
    info->text_bytes = text.size();
    info->vocab_size = uint64_t(tokenizer.vocab_size());
    info->tokenizer_fingerprint = tokenizer.fingerprint();
  }
  return tokens;
}

std::vector<std::string> split_documents(const std::string& text) {
  std::vector<std::string> docs;
  size_t start = 0;
  while (start < text.size()) {
    const auto end = text.find(kDocumentSeparator, start);
    if (end == std::string::npos) {
      docs.push_back(text.substr(start));
      break;
    }
    docs.push_back(text.substr(start, end - start));
    start = end + kDocumentSeparator.size();
  }
  return docs;
}

Tokenizer::Tokenizer(const std::string& model_path)
    : processor_(std::make_unique<sentencepiece::SentencePieceProcessor>()) {
  const auto bytes = read_file(model_path);
  const auto status = processor_->LoadFromSerializedProto(bytes);
  if (!status.ok()) throw Error(model_path + ": not a sentencepiece model: " + status.ToString());
  fingerprint_ = hash_string(0, bytes);
  // demix trains on lines, so no piece holds a newline and none is merged across one: a text's
  // tokens are then its lines' tokens joined by the newline byte piece, and encoding line by line
  // gives the same ids faster (shorter inputs for the BPE merge queue).
  bool newline_in_a_piece = false;
  for (int id = 0; id < processor_->GetPieceSize(); ++id)
    newline_in_a_piece |= processor_->IdToPiece(id).find('\n') != std::string::npos;
  const int newline = processor_->PieceToId("<0x0A>");
  if (!newline_in_a_piece && processor_->IsByte(newline)) newline_id_ = newline;
  // A model that adds a dummy prefix or trims whitespace treats each input's ends specially:
  // check that lines at a time give what the whole text gives.
  const std::string probe = " a  b \n\n  c\nd ";
  std::vector<uint32_t> by_lines;
  if (newline_id_ >= 0) encode_append(probe, by_lines);
  if (by_lines != encode(probe)) newline_id_ = -1;
}

Tokenizer::~Tokenizer() = default;

std::vector<uint32_t> Tokenizer::encode(const std::string& text) const {
  std::vector<int> ids;
  const auto status = processor_->Encode(text, &ids);
  TORCH_CHECK(status.ok(), "sentencepiece encode failed: ", status.ToString());
  return std::vector<uint32_t>(ids.begin(), ids.end());
}

void Tokenizer::encode_append(std::string_view text, std::vector<uint32_t>& out) const {
  thread_local std::vector<int> ids;
  auto encode = [&](std::string_view piece) {
    const auto status = processor_->Encode(piece, &ids);
    TORCH_CHECK(status.ok(), "sentencepiece encode failed: ", status.ToString());
    out.insert(out.end(), ids.begin(), ids.end());
  };
  if (newline_id_ < 0) return encode(text);
  for (size_t start = 0;;) {
    const auto end = text.find('\n', start);
    if (end != start) encode(text.substr(start, end == std::string_view::npos ? end : end - start));
    if (end == std::string_view::npos) return;
    out.push_back(uint32_t(newline_id_));
    start = end + 1;
  }
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
  // The sample: per training domain, the train documents of lowest hash whose text fits the
  // budget (a bounded heap, so the corpus is read as a stream and never held).
  DocumentReader reader(config);
  SplitRule rule(config);
  rule.fit(reader);
  const auto n_train = config.data.domains.size();
  using Entry = std::pair<uint64_t, std::string>;  // (hash, text), the largest hash on top
  std::vector<std::priority_queue<Entry>> chosen(n_train);
  std::vector<int64_t> bytes(n_train);
  const int64_t budget = tc.sample_bytes_per_domain;
  reader.read([&](Document&& doc) {
    if (size_t(doc.domain) >= n_train) return;
    const auto hash = document_hash(doc.text);
    if (rule.split(doc, hash) != 0) return;
    auto& heap = chosen[size_t(doc.domain)];
    auto& held = bytes[size_t(doc.domain)];
    const uint64_t key = hash_combine(config.data.split_seed + 1, hash.high);
    if (held >= budget && key >= heap.top().first) return;
    held += int64_t(doc.text.size());
    heap.emplace(key, std::move(doc.text));
    while (held - int64_t(heap.top().second.size()) >= budget) {
      held -= int64_t(heap.top().second.size());
      heap.pop();
    }
  });
  // sentencepiece reads one sentence per line and skips overlong lines, so the sample is written
  // line by line.
  const fs::path sample = model.parent_path() / (model.stem().string() + ".sample.txt");
  {
    std::ofstream out(sample, std::ios::trunc);
    for (auto& heap : chosen) {
      std::vector<Entry> docs;
      for (; !heap.empty(); heap.pop()) docs.push_back(heap.top());
      std::sort(docs.begin(), docs.end());
      for (const auto& [key, doc] : docs) {
        std::istringstream lines(doc);
        for (std::string line; std::getline(lines, line);)
          if (!line.empty() && line.size() <= 4000) out << line << '\n';
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
