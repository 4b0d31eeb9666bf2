#pragma once

// Encoded token files: a 64-byte self-describing header, then the tokens as uint16. The loader
// memory-maps them, so a corpus of any size costs no RAM until it is read.
//
// Header (little-endian): magic "DEMIXTOK", u32 version, u32 bytes per token, u64 tokens,
// u64 documents, u64 text bytes (of the UTF-8 source, for bits per byte), u64 vocab size,
// u64 tokenizer fingerprint (of the sentencepiece model that produced the tokens), zero padding.

#include <cstdint>
#include <string>
#include <vector>

namespace demix::data {

struct TokenFileHeader {
  uint64_t tokens = 0;
  uint64_t documents = 0;
  uint64_t text_bytes = 0;
  uint64_t vocab_size = 0;
  uint64_t tokenizer_fingerprint = 0;
};

// Writes `path` atomically (a temporary file renamed into place).
void write_token_file(const std::string& path, const std::vector<uint16_t>& tokens,
                      TokenFileHeader header);

class TokenFile {
 public:
  explicit TokenFile(const std::string& path);  // throws Error on a missing or malformed file
  ~TokenFile();
  TokenFile(const TokenFile&) = delete;
  TokenFile& operator=(const TokenFile&) = delete;

  const TokenFileHeader& header() const { return header_; }
  uint64_t size() const { return header_.tokens; }
  const uint16_t* tokens() const { return tokens_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  TokenFileHeader header_;
  void* mapping_ = nullptr;
  size_t mapping_bytes_ = 0;
  const uint16_t* tokens_ = nullptr;
};

}  // namespace demix::data
