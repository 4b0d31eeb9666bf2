#pragma once

// The documents of `data.sources`, read as a stream in a fixed order: sources in config order,
// the files of a source in sorted order, documents in file order. Nothing holds more than one
// document and one read buffer, whatever the corpus size.
//
// - jsonl: one JSON object per line, plain, gzip or zstd (told by the file's first bytes); the
//   text and the domain are dotted paths into the object, or the domain is fixed per source.
//   Blank lines are skipped. A document without its text field or domain, with empty text, or of
//   a domain the config does not list is skipped and counted; malformed JSON, text that is not a
//   string and a truncated or corrupt compressed stream are errors naming the file and line.
// - text_dir: <dir>/<domain>/<split>.txt, documents separated by a line holding a form feed; the
//   splits of every listed domain, test first (so that a duplicate is dropped from train, never
//   from test).

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "demix/core/config.h"

namespace demix {
struct Config;
}  // namespace demix

namespace demix::data {

inline const std::vector<std::string> kSplits = {"train", "valid", "test"};
constexpr int kHashSplit = -1;  // a document whose split its content's hash decides

struct Document {
  std::string text;
  int domain = 0;  // index into config.all_domains()
  int split = kHashSplit;
};

struct SkipCounts {
  uint64_t empty_text = 0;
  uint64_t missing_text = 0;
  uint64_t missing_domain = 0;
  std::map<std::string, uint64_t> other_domains;  // domains the config does not list (first 100)
  uint64_t other_domain_documents = 0;
};

// Between two documents of a text_dir file: a line holding a single form feed. Bits per byte
// count it as the text an end-of-text token stands for.
inline constexpr std::string_view kDocumentSeparator = "\n\f\n";

// Throws Error "<path>: not UTF-8 text (invalid byte 0x.. at offset N)" unless `text` is
// well-formed UTF-8 (RFC 3629: no overlongs, no surrogates); `offset` is where `text` starts in
// the file.
void check_utf8(std::string_view text, const std::string& path, uint64_t offset = 0);

class DocumentReader {
 public:
  explicit DocumentReader(const Config& config);  // lists the input files; throws Error on none

  // Calls take(document) for every document, in input order.
  void read(const std::function<void(Document&&)>& take);

  // (domain, split) pairs the inputs hold, whether or not any document reaches them: every split
  // of every domain for hash-split sources, the files present for text_dir.
  const std::vector<std::pair<int, int>>& declared() const { return declared_; }
  // The inputs' paths, sizes and modification times, for up-to-date checks.
  std::string fingerprint() const;
  uint64_t input_bytes() const { return input_bytes_; }
  uint64_t bytes_read() const { return bytes_read_; }           // of the (compressed) inputs so far
  const std::string& current_path() const { return current_; }  // the input being read
  const SkipCounts& skipped() const { return skipped_; }

 private:
  struct Input {
    size_t source;
    std::string path;
    int domain = -1;  // text_dir: from the layout
    int split = kHashSplit;
    uint64_t bytes = 0;
    std::string stamp;  // path, size and modification time, for fingerprint()
  };
  void add_input(size_t source, const std::string& path, int domain, int split);
  void read_jsonl(const Input& input, const std::function<void(Document&&)>& take);
  void read_text(const Input& input, const std::function<void(Document&&)>& take);

  const Config& config_;
  std::vector<SourceConfig> sources_;  // data.sources, or the one text_dir of data.corpus
  std::vector<std::string> domains_;
  std::vector<Input> inputs_;
  std::vector<std::pair<int, int>> declared_;
  uint64_t input_bytes_ = 0;
  uint64_t bytes_read_ = 0;
  std::string current_;
  SkipCounts skipped_;
};

}  // namespace demix::data
