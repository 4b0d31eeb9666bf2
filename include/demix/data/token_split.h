#pragma once

// An encoded split (one domain's train, valid or test tokens): a directory holding index.json and
// shard files 00000.bin, 00001.bin, ... of at most data.shard_tokens tokens each. The loader
// memory-maps the shards and reads any range across their boundaries, so a split of any size
// costs no RAM until it is read, and training or evaluation see one sequence of tokens.
//
// Shard file (little-endian): magic "DEMIXTOK", u32 version, u32 bytes per token (2 when the
// vocabulary fits in uint16, else 4), u64 tokens, u64 documents (ending in this shard), u64 text
// bytes (of those documents), u64 vocab size, u64 tokenizer fingerprint, zero padding to 64
// bytes, then the tokens. index.json lists the shards and the split's totals; it is written last,
// and the directory is built under a temporary name and renamed into place, so a split is either
// complete or absent.

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace demix::data {

struct SplitInfo {
  uint64_t tokens = 0;
  uint64_t documents = 0;
  uint64_t text_bytes = 0;  // of the documents, each counted with its 3-byte separator
  uint64_t vocab_size = 0;
  uint64_t tokenizer_fingerprint = 0;
  uint32_t token_bytes = 2;
  std::string signature;  // of the inputs and settings that produced it (up-to-date check)
};

// Bytes per stored token for a vocabulary.
inline uint32_t token_bytes_for(uint64_t vocab_size) { return vocab_size <= 65536 ? 2 : 4; }

class TokenSplit {
 public:
  explicit TokenSplit(const std::string& dir);  // throws Error on a missing or malformed split
  // Tokens held in memory (a text scored by `eval --text`), read like a split on disk.
  TokenSplit(std::vector<uint32_t> tokens, SplitInfo info, std::string name);
  ~TokenSplit();
  TokenSplit(const TokenSplit&) = delete;
  TokenSplit& operator=(const TokenSplit&) = delete;

  const SplitInfo& info() const { return info_; }
  uint64_t size() const { return info_.tokens; }
  size_t shard_count() const { return shards_.size(); }
  const std::string& path() const { return path_; }

  // Tokens [start, start + count) into `out`, across shard boundaries.
  void read(uint64_t start, uint64_t count, int64_t* out) const;
  // The largest token id and its position (one pass at memory bandwidth).
  std::pair<uint32_t, uint64_t> max_token() const;

 private:
  struct Shard {
    const void* tokens = nullptr;
    uint64_t size = 0;
    void* mapping = nullptr;  // null for in-memory tokens
    size_t mapping_bytes = 0;
  };
  std::string path_;
  SplitInfo info_;
  std::vector<Shard> shards_;
  std::vector<uint64_t> first_;  // first token of each shard
  std::vector<uint32_t> owned_;  // in-memory tokens
};

// Writes a split: documents are appended in order and cut into shards; commit() writes the index
// and renames the directory into place. Destroyed without commit(), it removes what it wrote.
class SplitWriter {
 public:
  SplitWriter(std::string dir, uint64_t shard_tokens, SplitInfo info);
  ~SplitWriter();
  SplitWriter(const SplitWriter&) = delete;
  SplitWriter& operator=(const SplitWriter&) = delete;

  // One document's tokens, its end-of-text token included, and its text's size in bytes.
  void append_document(const uint32_t* tokens, size_t count, uint64_t text_bytes);
  void append_document(const std::vector<uint32_t>& tokens, uint64_t text_bytes) {
    append_document(tokens.data(), tokens.size(), text_bytes);
  }
  const SplitInfo& info() const { return info_; }
  size_t shard_count() const { return shard_tokens_.size(); }
  void commit();

 private:
  void open_shard();
  void close_shard();

  std::string dir_;
  std::string tmp_dir_;
  uint64_t shard_capacity_;
  SplitInfo info_;
  std::vector<uint64_t> shard_tokens_;  // tokens of each shard written or open
  SplitInfo shard_;                     // the open shard's counts
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> file_{nullptr, nullptr};
  std::vector<char> buffer_;
  bool committed_ = false;
};

}  // namespace demix::data
