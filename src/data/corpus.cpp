#include "demix/data/corpus.h"

#include <algorithm>
#include <atomic>
#include <exception>
#include <filesystem>
#include <mutex>
#include <thread>

#include "demix/core/config.h"
#include "demix/core/error.h"
#include "demix/data/tokenizer.h"

namespace demix::data {

std::string text_path(const Config& config, const std::string& domain, const std::string& split) {
  return config.data.corpus + "/" + domain + "/" + split + ".txt";
}

std::string token_path(const Config& config, const std::string& domain, const std::string& split) {
  return config.data.tokens_dir + "/" + domain + "/" + split + ".bin";
}

namespace {

bool up_to_date(const std::string& tokens, const std::string& text, const Tokenizer& tokenizer) {
  if (!std::filesystem::exists(tokens)) return false;
  try {
    TokenFile file(tokens);
    return file.header().tokenizer_fingerprint == tokenizer.fingerprint() &&
           file.header().text_bytes == std::filesystem::file_size(text);
  } catch (const Error&) {
    return false;
  }
}

void encode_file(const std::string& text_file, const std::string& token_file,
                 const Tokenizer& tokenizer) {
  const auto text = read_text(text_file);
  TokenFileHeader header;
  const auto tokens = encode_documents(tokenizer, text, &header.documents);
  header.text_bytes = text.size();
  header.vocab_size = uint64_t(tokenizer.vocab_size());
  header.tokenizer_fingerprint = tokenizer.fingerprint();
  write_token_file(token_file, tokens, header);
}

}  // namespace

int encode_corpus(const Config& config) {
  const Tokenizer tokenizer(config.tokenizer.model);
  if (tokenizer.vocab_size() != config.model.vocab_size)
    throw Error(config.tokenizer.model + ": vocabulary of " +
                std::to_string(tokenizer.vocab_size()) +
                " pieces, but model.vocab_size=" + std::to_string(config.model.vocab_size));
  std::vector<std::pair<std::string, std::string>> todo;  // (text, tokens)
  const auto domains = config.all_domains();
  for (const auto& domain : domains) {
    for (const auto& split : kSplits) {
      const auto text = text_path(config, domain, split);
      if (!std::filesystem::exists(text))
        throw Error(text + ": missing corpus file (run scripts/prepare_data.sh)");
      const auto tokens = token_path(config, domain, split);
      if (!up_to_date(tokens, text, tokenizer)) todo.emplace_back(text, tokens);
    }
  }
  // sentencepiece's Encode is const and thread-safe: one file per worker.
  std::atomic<size_t> next{0};
  std::exception_ptr failure;
  std::mutex failure_mutex;
  std::vector<std::thread> workers;
  const auto n_workers = std::max(1u, std::min(std::thread::hardware_concurrency(), 8u));
  for (unsigned w = 0; w < n_workers; ++w)
    workers.emplace_back([&] {
      try {
        for (size_t i = next++; i < todo.size(); i = next++)
          encode_file(todo[i].first, todo[i].second, tokenizer);
      } catch (...) {
        std::lock_guard<std::mutex> lock(failure_mutex);
        if (!failure) failure = std::current_exception();
        next = todo.size();
      }
    });
  for (auto& w : workers) w.join();
  if (failure) std::rethrow_exception(failure);
  return int(todo.size());
}

std::unique_ptr<TokenFile> open_split(const Config& config, const std::string& domain,
                                      const std::string& split) {
  auto file = std::make_unique<TokenFile>(token_path(config, domain, split));
  if (file->header().vocab_size != uint64_t(config.model.vocab_size))
    throw Error(
        file->path() + ": encoded with a " + std::to_string(file->header().vocab_size) +
        "-piece vocabulary, but model.vocab_size=" + std::to_string(config.model.vocab_size));
  if (file->size() < uint64_t(config.model.seq_len) + 1)
    throw Error(file->path() + ": " + std::to_string(file->size()) +
                " tokens, fewer than one sequence (model.seq_len + 1 = " +
                std::to_string(config.model.seq_len + 1) + ")");
  // An id past the vocabulary would index outside the embedding: check them all once (a pass at
  // memory bandwidth).
  const uint16_t* tokens = file->tokens();
  const auto end = tokens + file->size();
  const auto max = std::max_element(tokens, end);
  if (*max >= config.model.vocab_size)
    throw Error(file->path() + ": token id " + std::to_string(*max) + " at position " +
                std::to_string(max - tokens) + " is outside the vocabulary (model.vocab_size=" +
                std::to_string(config.model.vocab_size) + ")");
  return file;
}

}  // namespace demix::data
