#pragma once

// The corpus on disk: the documents of data.sources (document_source.h), encoded by `demix data`
// into one token split per domain and split at <tokens_dir>/<domain>/<split>/ (token_split.h),
// with a report of what was read, dropped and written at <tokens_dir>/REPORT.md and report.json.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "demix/data/document_source.h"
#include "demix/data/token_split.h"

namespace demix {
struct Config;
}

namespace demix::data {

std::string text_path(const Config& config, const std::string& domain, const std::string& split);
std::string split_dir(const Config& config, const std::string& domain, const std::string& split);

// A document's content hash: the key of duplicate detection, and the source of its split.
struct DocumentHash {
  uint64_t low = 0, high = 0;
  bool operator==(const DocumentHash& o) const { return low == o.low && high == o.high; }
};
DocumentHash document_hash(std::string_view text);

// Which split a document of a hash-split source goes to: a hash of its text and data.split_seed
// against data.valid_fraction and test_fraction, so the choice depends on nothing but the text
// (not on file order or on which files are present). With data.valid_documents/test_documents,
// fit() reads the sources once to place exactly that many documents of each domain there.
class SplitRule {
 public:
  explicit SplitRule(const Config& config);
  void fit(DocumentReader& reader);
  int split(const Document& doc, const DocumentHash& hash) const;
  double position(const DocumentHash& hash) const;  // uniform in [0, 1)

 private:
  const Config& config_;
  std::vector<double> test_below_, valid_below_;  // per domain: position thresholds
};

// Encodes every domain's splits with the configured tokenizer on data.workers threads, one
// end-of-text token after each document, dropping exact duplicates (data.dedup). The output is
// the same bytes for any number of workers. Nothing is written when the existing splits were made
// from the same inputs, settings and tokenizer. Returns the number of splits written.
int encode_corpus(const Config& config);

// Opens an encoded split; throws Error if it is missing, of another vocabulary size, shorter than
// one sequence or holds an id outside the vocabulary.
std::unique_ptr<TokenSplit> open_split(const Config& config, const std::string& domain,
                                       const std::string& split);

}  // namespace demix::data
