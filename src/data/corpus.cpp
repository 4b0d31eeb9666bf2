#include "demix/data/corpus.h"

#include <spdlog/spdlog.h>
#include <xxhash.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <exception>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "demix/core/config.h"
#include "demix/core/error.h"
#include "demix/core/file.h"
#include "demix/core/hash.h"
#include "demix/core/json.h"
#include "demix/data/tokenizer.h"

namespace demix::data {
namespace fs = std::filesystem;

std::string text_path(const Config& config, const std::string& domain, const std::string& split) {
  return config.data.corpus + "/" + domain + "/" + split + ".txt";
}

std::string split_dir(const Config& config, const std::string& domain, const std::string& split) {
  return config.data.tokens_dir + "/" + domain + "/" + split;
}

DocumentHash document_hash(std::string_view text) {
  const auto h = XXH3_128bits(text.data(), text.size());
  return {h.low64, h.high64};
}

namespace {
// The hashes of the documents kept so far: open addressing, 16 bytes a slot, at most half full.
class DocumentSet {
 public:
  DocumentSet() : slots_(1 << 16) {}
  bool insert(DocumentHash h) {                // false when already there
    if (h.low == 0 && h.high == 0) h.low = 1;  // (0, 0) marks an empty slot
    if (2 * (size_ + 1) > slots_.size()) grow();
    for (size_t i = h.low & (slots_.size() - 1);; i = (i + 1) & (slots_.size() - 1)) {
      if (slots_[i] == h) return false;
      if (slots_[i] == DocumentHash{}) {
        slots_[i] = h;
        ++size_;
        return true;
      }
    }
  }

 private:
  void grow() {
    std::vector<DocumentHash> old(slots_.size() * 2);
    old.swap(slots_);
    size_ = 0;
    for (const auto& h : old)
      if (!(h == DocumentHash{})) insert(h);
  }
  std::vector<DocumentHash> slots_;
  size_t size_ = 0;
};

}  // namespace

SplitRule::SplitRule(const Config& config) : config_(config) {
  const auto n = config.all_domains().size();
  test_below_.assign(n, config.data.test_fraction);
  valid_below_.assign(n, config.data.test_fraction + config.data.valid_fraction);
}

double SplitRule::position(const DocumentHash& hash) const {
  return double(hash_combine(config_.data.split_seed, hash.low) >> 11) * 0x1.0p-53;
}

void SplitRule::fit(DocumentReader& reader) {
  const auto& data = config_.data;
  if (data.valid_documents == 0 && data.test_documents == 0) return;
  // Sized by counts: the test_documents lowest positions of each domain go to test, the next
  // valid_documents to valid.
  const auto n_test = size_t(data.test_documents), n_valid = size_t(data.valid_documents);
  std::vector<std::set<double>> lowest(test_below_.size());
  DocumentSet seen;  // a duplicate the encoder will drop must not take a place
  reader.read([&](Document&& doc) {
    const auto hash = document_hash(doc.text);
    if (data.dedup && !seen.insert(hash)) return;
    if (doc.split != kHashSplit) return;
    auto& low = lowest[size_t(doc.domain)];
    low.insert(position(hash));
    // The n_test + n_valid lowest, and the one above them: where valid ends.
    if (low.size() > n_test + n_valid + 1) low.erase(std::prev(low.end()));
  });
  for (size_t d = 0; d < lowest.size(); ++d) {
    const std::vector<double> low(lowest[d].begin(), lowest[d].end());
    auto above = [&](size_t n) { return n < low.size() ? low[n] : 1.0; };  // n below it
    test_below_[d] = above(n_test);
    valid_below_[d] = above(n_test + n_valid);
  }
}

int SplitRule::split(const Document& doc, const DocumentHash& hash) const {
  if (doc.split != kHashSplit) return doc.split;
  const double p = position(hash);
  const auto d = size_t(doc.domain);
  return p < test_below_[d] ? 2 : p < valid_below_[d] ? 1 : 0;
}

namespace {

std::string megabytes(double bytes) { return fmt::format("{:.1f} MB", bytes / 1e6); }

// The inputs, settings and tokenizer an encoding depends on, as one hash.
std::string signature(const Config& config, const DocumentReader& reader,
                      const Tokenizer& tokenizer) {
  auto data = config.data;
  data.workers = 0;  // these change how, not what, is written
  data.memory_mb = 0;
  data.chunk_bytes = 0;
  data.sequences_per_domain = 0;
  data.sampling = DataSampling::kBalanced;
  data.seed = 0;
  if (!data.sources.empty()) data.corpus.clear();  // not read
  Config key;
  key.data = data;
  const auto text = to_yaml(key) + reader.fingerprint() + std::to_string(tokenizer.fingerprint());
  const auto h = XXH3_128bits(text.data(), text.size());
  return fmt::format("{:016x}{:016x}", h.high64, h.low64);
}

bool up_to_date(const Config& config, const DocumentReader& reader, const std::string& sig) {
  const auto domains = config.all_domains();
  for (const auto& [d, s] : reader.declared()) {
    const auto index = split_dir(config, domains[size_t(d)], kSplits[size_t(s)]) + "/index.json";
    if (!fs::exists(index)) return false;
    try {
      if (read_json_file(index, "split index").value("signature", "") != sig) return false;
    } catch (const Error&) {
      return false;
    }
  }
  return true;
}

// Logs progress at most every few seconds: bytes of the inputs read, rate, documents, time left.
class ProgressLine {
 public:
  explicit ProgressLine(uint64_t total_bytes) : total_(total_bytes) {}
  // `input_read` bytes of the inputs are encoded, holding `text` bytes of documents.
  void update(const std::string& input, uint64_t input_read, uint64_t text, uint64_t documents) {
    const auto now = Clock::now();
    if (now - last_ < std::chrono::seconds(5)) return;
    last_ = now;
    const double seconds = std::chrono::duration<double>(now - start_).count();
    const double done = double(input_read) / double(std::max<uint64_t>(total_, 1));
    spdlog::info(
        "data: {}: {:.0f}% of {} input, {} of text at {:.1f} MB/s, {} documents, {:.0f}s "
        "left",
        input, 100 * done, megabytes(double(total_)), megabytes(double(text)),
        double(text) / 1e6 / seconds, documents, done > 0 ? seconds * (1 - done) / done : 0.0);
  }

 private:
  using Clock = std::chrono::steady_clock;
  uint64_t total_;
  Clock::time_point start_ = Clock::now();
  Clock::time_point last_ = Clock::now();
};

// Documents encoded on worker threads and handed back in the order they were read, with at most
// `limit` chunks in flight: the output is the same for any number of workers, and the memory
// held is bounded by the chunk size and the limit, not by the corpus.
class OrderedEncoder {
 public:
  struct Chunk {
    std::vector<Document> docs;
    std::vector<int> splits;
    std::vector<uint32_t> tokens;  // every document's, one after another
    std::vector<size_t> ends;      // where each document's tokens end
    size_t bytes = 0;
    uint64_t input_read = 0;  // of the inputs when the chunk was read (for the progress line)
    bool done = false;
  };
  using Sink = std::function<void(Chunk&)>;

  OrderedEncoder(const Tokenizer& tokenizer, int workers, size_t limit, Sink sink)
      : tokenizer_(tokenizer), limit_(limit), sink_(std::move(sink)) {
    for (int w = 0; w < workers; ++w) threads_.emplace_back([this] { work(); });
  }
  ~OrderedEncoder() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
      todo_.clear();  // after an error: the chunks not started are not wanted
    }
    work_ready_.notify_all();
    for (auto& t : threads_) t.join();
  }

  void submit(std::unique_ptr<Chunk> chunk) {
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      write_finished(lock);
      if (in_flight_.size() < limit_) break;
      chunk_done_.wait(lock);
    }
    todo_.push_back(chunk.get());
    in_flight_.push_back(std::move(chunk));
    work_ready_.notify_one();
  }

  void finish() {
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      write_finished(lock);
      if (in_flight_.empty()) return;
      chunk_done_.wait(lock);
    }
  }

 private:
  // Hands the finished chunks at the head of the queue to the sink (on the reading thread).
  void write_finished(std::unique_lock<std::mutex>& lock) {
    if (failure_) std::rethrow_exception(failure_);
    while (!in_flight_.empty() && in_flight_.front()->done) {
      auto chunk = std::move(in_flight_.front());
      in_flight_.pop_front();
      lock.unlock();
      sink_(*chunk);
      chunk.reset();
      lock.lock();
    }
  }

  void work() {
    for (;;) {
      Chunk* chunk = nullptr;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        work_ready_.wait(lock, [&] { return stopping_ || !todo_.empty(); });
        if (todo_.empty()) return;
        chunk = todo_.front();
        todo_.pop_front();
      }
      try {
        // One buffer for the chunk: no allocation per document, none freed on another thread.
        chunk->tokens.reserve(chunk->bytes / 3);
        for (const auto& doc : chunk->docs) {
          tokenizer_.encode_append(doc.text, chunk->tokens);
          chunk->tokens.push_back(uint32_t(tokenizer_.eos_id()));
          chunk->ends.push_back(chunk->tokens.size());
        }
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!failure_) failure_ = std::current_exception();
      }
      {
        std::lock_guard<std::mutex> lock(mutex_);
        chunk->done = true;
      }
      chunk_done_.notify_all();
    }
  }

  const Tokenizer& tokenizer_;
  size_t limit_;
  Sink sink_;
  std::mutex mutex_;
  std::condition_variable work_ready_, chunk_done_;
  std::deque<std::unique_ptr<Chunk>> in_flight_;  // in input order
  std::deque<Chunk*> todo_;
  std::exception_ptr failure_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

void write_report(const Config& config, const std::string& sig,
                  const std::map<std::pair<int, int>, std::unique_ptr<SplitWriter>>& writers,
                  const std::vector<uint64_t>& duplicates_of, const DocumentReader& reader,
                  uint64_t documents_read, int workers, double seconds) {
  const auto domains = config.all_domains();
  Json splits = Json::array();
  std::string rows;
  uint64_t text_bytes = 0, tokens = 0, documents = 0, duplicates = 0;
  for (const auto& [key, writer] : writers) {
    const auto& info = writer->info();
    const auto& domain = domains[size_t(key.first)];
    const double per_token = info.tokens ? double(info.text_bytes) / double(info.tokens) : 0.0;
    splits.push_back({{"domain", domain},
                      {"split", kSplits[size_t(key.second)]},
                      {"documents", info.documents},
                      {"text_bytes", info.text_bytes},
                      {"tokens", info.tokens},
                      {"bytes_per_token", per_token},
                      {"shards", writer->shard_count()}});
    rows += fmt::format("| {} | {} | {} | {:.2f} | {} | {:.3f} | {} |\n", domain,
                        kSplits[size_t(key.second)], info.documents, double(info.text_bytes) / 1e6,
                        info.tokens, per_token, writer->shard_count());
    text_bytes += info.text_bytes;
    tokens += info.tokens;
    documents += info.documents;
  }
  Json dropped = Json::object();
  std::string dropped_rows;
  for (size_t d = 0; d < duplicates_of.size(); ++d) {
    dropped[domains[d]] = duplicates_of[d];
    duplicates += duplicates_of[d];
    if (duplicates_of[d])
      dropped_rows += fmt::format("| {} | {} |\n", domains[d], duplicates_of[d]);
  }
  const auto& skipped = reader.skipped();
  Json other = Json::object();
  for (const auto& [name, n] : skipped.other_domains) other[name] = n;
  const Json report = {{"signature", sig},
                       {"tokenizer", config.tokenizer.model},
                       {"workers", workers},
                       {"seconds", seconds},
                       {"input_bytes", reader.input_bytes()},
                       {"documents_read", documents_read},
                       {"documents", documents},
                       {"text_bytes", text_bytes},
                       {"tokens", tokens},
                       {"duplicates_dropped", duplicates},
                       {"duplicates_by_domain", dropped},
                       {"skipped",
                        {{"empty_text", skipped.empty_text},
                         {"missing_text", skipped.missing_text},
                         {"missing_domain", skipped.missing_domain},
                         {"other_domain_documents", skipped.other_domain_documents},
                         {"other_domains", other}}},
                       {"splits", splits}};
  write_json_file(config.data.tokens_dir + "/report.json", report);
  std::string md = "# Data report\n\n";
  md += fmt::format(
      "{} documents read from {} of input in {:.1f} s on {} workers ({:.2f} MB/s); {} kept, "
      "{} exact duplicates dropped; {} tokens of {} text ({:.3f} bytes per token). Tokenizer: "
      "`{}`. Skipped: {} with empty text, {} without the text field, {} without a domain, {} of "
      "domains the config does not list.\n\n",
      documents_read, megabytes(double(reader.input_bytes())), seconds, workers,
      double(text_bytes) / 1e6 / std::max(seconds, 1e-9), documents, duplicates, tokens,
      megabytes(double(text_bytes)), tokens ? double(text_bytes) / double(tokens) : 0.0,
      config.tokenizer.model, skipped.empty_text, skipped.missing_text, skipped.missing_domain,
      skipped.other_domain_documents);
  md += "| domain | split | documents | MB | tokens | bytes/token | shards |\n";
  md += "|---|---|---:|---:|---:|---:|---:|\n" + rows;
  if (!dropped_rows.empty()) md += "\n| domain | duplicates dropped |\n|---|---:|\n" + dropped_rows;
  write_file_atomic(config.data.tokens_dir + "/REPORT.md", md);
}

}  // namespace

int encode_corpus(const Config& config) {
  const Tokenizer tokenizer(config.tokenizer.model);
  if (tokenizer.vocab_size() != config.model.vocab_size)
    throw Error(config.tokenizer.model + ": vocabulary of " +
                std::to_string(tokenizer.vocab_size()) +
                " pieces, but model.vocab_size=" + std::to_string(config.model.vocab_size));
  DocumentReader reader(config);
  const auto sig = signature(config, reader, tokenizer);
  if (up_to_date(config, reader, sig)) return 0;
  const auto start = std::chrono::steady_clock::now();
  SplitRule rule(config);
  rule.fit(reader);

  const auto domains = config.all_domains();
  SplitInfo base;
  base.vocab_size = uint64_t(tokenizer.vocab_size());
  base.tokenizer_fingerprint = tokenizer.fingerprint();
  base.token_bytes = token_bytes_for(base.vocab_size);
  base.signature = sig;
  std::map<std::pair<int, int>, std::unique_ptr<SplitWriter>> writers;
  for (const auto& [d, s] : reader.declared())
    writers[{d, s}] =
        std::make_unique<SplitWriter>(split_dir(config, domains[size_t(d)], kSplits[size_t(s)]),
                                      uint64_t(config.data.shard_tokens), base);

  const int workers = config.data.workers > 0
                          ? int(config.data.workers)
                          : int(std::max(1u, std::thread::hardware_concurrency()));
  const auto chunk_bytes = size_t(config.data.chunk_bytes);
  // A chunk in flight holds its text and about as many bytes of tokens: budget three times it.
  const size_t limit = std::max<size_t>(
      size_t(workers) + 1, size_t(config.data.memory_mb) * (1 << 20) / (3 * chunk_bytes));
  ProgressLine progress(reader.input_bytes());
  uint64_t documents_written = 0, text_written = 0;
  OrderedEncoder encoder(tokenizer, workers, limit, [&](OrderedEncoder::Chunk& chunk) {
    for (size_t i = 0, begin = 0; i < chunk.docs.size(); begin = chunk.ends[i++])
      writers.at({chunk.docs[i].domain, chunk.splits[i]})
          ->append_document(chunk.tokens.data() + begin, chunk.ends[i] - begin,
                            chunk.docs[i].text.size() + kDocumentSeparator.size());
    documents_written += chunk.docs.size();
    text_written += chunk.bytes;
    progress.update(reader.current_path(), chunk.input_read, text_written, documents_written);
  });
  std::vector<uint64_t> duplicates_of(domains.size());
  DocumentSet seen;
  uint64_t documents_read = 0;
  auto chunk = std::make_unique<OrderedEncoder::Chunk>();
  reader.read([&](Document&& doc) {
    ++documents_read;
    const auto hash = document_hash(doc.text);
    if (config.data.dedup && !seen.insert(hash)) {
      ++duplicates_of[size_t(doc.domain)];
      return;
    }
    chunk->splits.push_back(rule.split(doc, hash));
    chunk->bytes += doc.text.size();
    chunk->docs.push_back(std::move(doc));
    if (chunk->bytes >= chunk_bytes) {
      chunk->input_read = reader.bytes_read();
      encoder.submit(std::move(chunk));
      chunk = std::make_unique<OrderedEncoder::Chunk>();
    }
  });
  chunk->input_read = reader.input_bytes();
  if (!chunk->docs.empty()) encoder.submit(std::move(chunk));
  encoder.finish();

  // Training reads a training domain's train and valid splits: both must hold documents.
  for (size_t d = 0; d < config.data.domains.size(); ++d)
    for (int s : {0, 1}) {
      const auto it = writers.find({int(d), s});
      if (it == writers.end() || it->second->info().documents == 0)
        throw Error(split_dir(config, domains[d], kSplits[size_t(s)]) + ": no " +
                    (s == 0 ? "training" : "validation") + " documents for '" + domains[d] +
                    "' in the inputs (nothing was written)");
    }
  for (auto& [key, writer] : writers) writer->commit();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  write_report(config, sig, writers, duplicates_of, reader, documents_read, workers, seconds);
  return int(writers.size());
}

std::unique_ptr<TokenSplit> open_split(const Config& config, const std::string& domain,
                                       const std::string& split) {
  auto file = std::make_unique<TokenSplit>(split_dir(config, domain, split));
  if (file->info().vocab_size != uint64_t(config.model.vocab_size))
    throw Error(
        file->path() + ": encoded with a " + std::to_string(file->info().vocab_size) +
        "-piece vocabulary, but model.vocab_size=" + std::to_string(config.model.vocab_size));
  if (file->size() < uint64_t(config.model.seq_len) + 1)
    throw Error(file->path() + ": " + std::to_string(file->size()) +
                " tokens, fewer than one sequence (model.seq_len + 1 = " +
                std::to_string(config.model.seq_len + 1) + ")");
  // An id past the vocabulary would index outside the embedding: check them all once.
  const auto [max, position] = file->max_token();
  if (max >= config.model.vocab_size)
    throw Error(file->path() + ": token id " + std::to_string(max) + " at position " +
                std::to_string(position) + " is outside the vocabulary (model.vocab_size=" +
                std::to_string(config.model.vocab_size) + ")");
  return file;
}

}  // namespace demix::data
