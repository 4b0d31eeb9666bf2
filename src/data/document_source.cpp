#include "demix/data/document_source.h"

#include <glob.h>
#include <sys/stat.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#include "demix/core/config.h"
#include "demix/core/error.h"
#include "demix/core/json.h"

namespace demix::data {
namespace fs = std::filesystem;

namespace {

// The offset of the first byte that is not well-formed UTF-8, or npos.
size_t invalid_utf8_offset(std::string_view text) {
  const auto* bytes = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  for (size_t i = 0; i < n;) {
    const unsigned char c = bytes[i];
    if (c < 0x80) {  // the common case, one byte
      ++i;
      continue;
    }
    const size_t len = (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
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
    if (!ok) return i;
    i += len;
  }
  return std::string_view::npos;
}

}  // namespace

void check_utf8(std::string_view text, const std::string& path, uint64_t offset) {
  const auto bad = invalid_utf8_offset(text);
  if (bad == std::string_view::npos) return;
  char hex[8];
  std::snprintf(hex, sizeof(hex), "0x%02x", unsigned(static_cast<unsigned char>(text[bad])));
  throw Error(path + ": not UTF-8 text (invalid byte " + hex + " at offset " +
              std::to_string(offset + bad) + ")");
}

namespace {

constexpr size_t kReadBytes = 1 << 20;

// A file's bytes, decompressed if it starts with a gzip or zstd magic number.
class ByteStream {
 public:
  explicit ByteStream(const std::string& path) : path_(path) {
    file_ = std::fopen(path.c_str(), "rb");
    if (!file_) throw Error(path + ": cannot open: " + std::strerror(errno));
    unsigned char magic[4] = {};
    const size_t n = std::fread(magic, 1, 4, file_);
    std::rewind(file_);
    if (n == 4 && magic[0] == 0x28 && magic[1] == 0xb5 && magic[2] == 0x2f && magic[3] == 0xfd) {
      zstd_ = ZSTD_createDCtx();
      in_.resize(ZSTD_DStreamInSize());
    } else if (n >= 2 && magic[0] == 0x1f && magic[1] == 0x8b) {
      std::fclose(file_);
      file_ = nullptr;
      gzip_ = gzopen(path.c_str(), "rb");
      if (!gzip_) throw Error(path + ": cannot open: " + std::strerror(errno));
      gzbuffer(gzip_, kReadBytes);
    }
  }
  ~ByteStream() {
    if (file_) std::fclose(file_);
    if (gzip_) gzclose(gzip_);
    if (zstd_) ZSTD_freeDCtx(zstd_);
  }
  ByteStream(const ByteStream&) = delete;
  ByteStream& operator=(const ByteStream&) = delete;

  // Up to `n` bytes into `out`; 0 at the end. Throws Error on a truncated or corrupt stream.
  size_t read(char* out, size_t n) {
    if (gzip_) {
      const int got = gzread(gzip_, out, unsigned(n));
      int code = Z_OK;
      const char* message = gzerror(gzip_, &code);
      if (got < 0 || (code != Z_OK && code != Z_STREAM_END))
        throw Error(path_ + ": corrupt or truncated gzip stream (" + message + ")");
      return size_t(got);
    }
    if (!zstd_) {
      const size_t got = std::fread(out, 1, n, file_);
      if (got == 0 && std::ferror(file_)) throw Error(path_ + ": read failed");
      return got;
    }
    ZSTD_outBuffer output{out, n, 0};
    while (output.pos == 0) {
      if (input_.pos == input_.size) {
        input_ = {in_.data(), std::fread(in_.data(), 1, in_.size(), file_), 0};
        if (input_.size == 0) {
          if (frame_open_) throw Error(path_ + ": truncated zstd stream");
          return 0;
        }
      }
      const size_t left = ZSTD_decompressStream(zstd_, &output, &input_);
      if (ZSTD_isError(left))
        throw Error(path_ + ": corrupt zstd stream (" + ZSTD_getErrorName(left) + ")");
      frame_open_ = left != 0;
    }
    return output.pos;
  }

  // Bytes of the file consumed so far (compressed bytes for a compressed file).
  uint64_t offset() const {
    if (gzip_) return uint64_t(gzoffset(gzip_));
    return uint64_t(std::ftell(file_));
  }

 private:
  std::string path_;
  std::FILE* file_ = nullptr;
  gzFile gzip_ = nullptr;
  ZSTD_DCtx* zstd_ = nullptr;
  std::vector<char> in_;
  ZSTD_inBuffer input_{nullptr, 0, 0};
  bool frame_open_ = false;
};

// Splits a stream at `separator`; the last piece may end without one.
class PieceReader {
 public:
  PieceReader(ByteStream& stream, std::string separator)
      : stream_(stream), separator_(std::move(separator)), chunk_(kReadBytes) {}

  // The next piece into `piece`, without its separator; false at the end. `start` gets its offset.
  bool next(std::string& piece, uint64_t* start = nullptr) {
    piece.clear();
    if (start) *start = offset_;
    for (;;) {
      const auto end = buffer_.find(separator_, scanned_);
      if (end != std::string::npos) {
        piece.assign(buffer_, begin_, end - begin_);
        offset_ += end + separator_.size() - begin_;
        begin_ = scanned_ = end + separator_.size();
        return true;
      }
      // A separator may straddle two reads: rescan its first bytes after the next one.
      scanned_ = std::max(begin_, buffer_.size() - std::min(buffer_.size(), separator_.size() - 1));
      buffer_.erase(0, begin_);
      scanned_ -= begin_;
      begin_ = 0;
      const size_t got = stream_.read(chunk_.data(), chunk_.size());
      if (got == 0) {
        if (buffer_.empty()) return false;
        piece.swap(buffer_);
        offset_ += piece.size();
        buffer_.clear();
        scanned_ = 0;
        return true;
      }
      buffer_.append(chunk_.data(), got);
    }
  }

 private:
  ByteStream& stream_;
  std::string separator_;
  std::vector<char> chunk_;
  std::string buffer_;
  size_t begin_ = 0;    // first byte of the next piece in buffer_
  size_t scanned_ = 0;  // buffer_ holds no separator starting before this
  uint64_t offset_ = 0;
};

// The value at a dotted path ("meta.pile_set_name"), or nullptr when a step is missing.
const nlohmann::json* find_field(const nlohmann::json& object, const std::string& path) {
  const nlohmann::json* node = &object;
  size_t start = 0;
  for (;;) {
    const auto dot = path.find('.', start);
    const auto key = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (!node->is_object()) return nullptr;
    const auto it = node->find(key);
    if (it == node->end() || it->is_null()) return nullptr;
    node = &*it;
    if (dot == std::string::npos) return node;
    start = dot + 1;
  }
}

std::vector<std::string> expand(const std::string& pattern) {
  glob_t matches{};
  const int status = ::glob(pattern.c_str(), GLOB_ERR, nullptr, &matches);
  std::vector<std::string> paths(matches.gl_pathv, matches.gl_pathv + matches.gl_pathc);
  ::globfree(&matches);
  if (status == GLOB_NOMATCH || paths.empty()) return {};
  std::sort(paths.begin(), paths.end());
  return paths;
}

}  // namespace

void DocumentReader::add_input(size_t source, const std::string& path, int domain, int split) {
  struct stat st {};
  ::stat(path.c_str(), &st);
  inputs_.push_back({source, path, domain, split, uint64_t(st.st_size),
                     path + " " + std::to_string(st.st_size) + " " +
                         std::to_string(st.st_mtim.tv_sec) + "." +
                         std::to_string(st.st_mtim.tv_nsec) + "\n"});
  input_bytes_ += uint64_t(st.st_size);
}

DocumentReader::DocumentReader(const Config& config)
    : config_(config), sources_(config.data.sources), domains_(config.all_domains()) {
  if (sources_.empty()) {
    SourceConfig corpus;
    corpus.format = SourceFormat::kTextDir;
    corpus.paths = {config.data.corpus};
    sources_.push_back(corpus);
  }
  std::set<std::pair<int, int>> declared;
  std::set<std::string> seen;
  for (size_t s = 0; s < sources_.size(); ++s) {
    const auto& source = sources_[s];
    const auto name = config.data.sources.empty() ? std::string("data.corpus")
                                                  : "data.sources[" + std::to_string(s) + "]";
    if (source.format == SourceFormat::kTextDir) {
      const auto& dir = source.paths.at(0);
      if (!fs::is_directory(dir)) throw Error(dir + ": " + name + " is not a directory");
      for (int d = 0; d < int(domains_.size()); ++d) {
        bool any = false;
        for (int split : {2, 1, 0}) {
          const auto path = dir + "/" + domains_[size_t(d)] + "/" + kSplits[size_t(split)] + ".txt";
          if (!fs::exists(path)) continue;
          add_input(s, path, d, split);
          declared.insert({d, split});
          any = true;
        }
        if (!any)
          throw Error(dir + "/" + domains_[size_t(d)] +
                      ": no train.txt, valid.txt or test.txt for " + "the domain '" +
                      domains_[size_t(d)] + "' (run scripts/prepare_data.sh)");
      }
      continue;
    }
    const int split = source.split == SourceSplit::kHash    ? kHashSplit
                      : source.split == SourceSplit::kTrain ? 0
                      : source.split == SourceSplit::kValid ? 1
                                                            : 2;
    int domain = -1;
    if (!source.domain.empty()) {
      const auto it = std::find(domains_.begin(), domains_.end(), source.domain);
      if (it == domains_.end())
        throw Error(name + ".domain=" + source.domain +
                    ": expected one of data.domains or data.eval_domains");
      domain = int(it - domains_.begin());
    }
    for (const auto& pattern : source.paths) {
      const auto paths = expand(pattern);
      if (paths.empty()) throw Error(name + ".paths: '" + pattern + "' matches no file");
      for (const auto& path : paths)
        if (seen.insert(path).second) add_input(s, path, domain, split);
    }
    for (int d = 0; d < int(domains_.size()); ++d)
      if (domain < 0 || d == domain)
        for (int sp = 0; sp < 3; ++sp)
          if (split == kHashSplit || sp == split) declared.insert({d, sp});
  }
  declared_.assign(declared.begin(), declared.end());
}

std::string DocumentReader::fingerprint() const {
  std::string text;
  for (const auto& input : inputs_) text += input.stamp;
  return text;
}

void DocumentReader::read(const std::function<void(Document&&)>& take) {
  uint64_t done = 0;  // bytes of the inputs finished
  for (const auto& input : inputs_) {
    current_ = input.path;
    if (sources_[input.source].format == SourceFormat::kTextDir)
      read_text(input, take);
    else
      read_jsonl(input, take);
    done += input.bytes;
    bytes_read_ = done;
  }
}

void DocumentReader::read_text(const Input& input, const std::function<void(Document&&)>& take) {
  ByteStream stream(input.path);
  PieceReader pieces(stream, std::string(kDocumentSeparator));
  const uint64_t before = bytes_read_;
  Document doc;
  uint64_t start = 0;
  while (pieces.next(doc.text, &start)) {
    check_utf8(doc.text, input.path, start);
    doc.domain = input.domain;
    doc.split = input.split;
    bytes_read_ = before + stream.offset();
    take(std::move(doc));
    doc = Document{};
  }
}

void DocumentReader::read_jsonl(const Input& input, const std::function<void(Document&&)>& take) {
  const auto& source = sources_[input.source];
  ByteStream stream(input.path);
  PieceReader lines(stream, "\n");
  const uint64_t before = bytes_read_;
  std::string line;
  for (uint64_t number = 1; lines.next(line); ++number) {
    const auto where = [&] { return input.path + ":" + std::to_string(number) + ": "; };
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json object;
    try {
      object = nlohmann::json::parse(line);
    } catch (const nlohmann::json::parse_error& e) {
      throw Error(where() + "invalid JSON: " + json_message(e));
    }
    if (!object.is_object())
      throw Error(where() + "expected a JSON object, got " + object.type_name());
    // The string at `path`; null (and counted in `missing`) when the field is absent or null.
    auto string_field = [&](const std::string& path, uint64_t& missing) -> const std::string* {
      const auto* value = find_field(object, path);
      if (!value) {
        ++missing;
        return nullptr;
      }
      if (!value->is_string())
        throw Error(where() + path + " is a " + value->type_name() + ", expected a string");
      return &value->get_ref<const std::string&>();
    };
    const auto* text = string_field(source.text_field, skipped_.missing_text);
    if (!text) continue;
    Document doc;
    doc.split = input.split;
    doc.domain = input.domain;
    if (doc.domain < 0) {
      const auto* label = string_field(source.domain_field, skipped_.missing_domain);
      if (!label) continue;
      const auto& name = *label;
      const auto it = std::find(domains_.begin(), domains_.end(), name);
      if (it == domains_.end()) {
        ++skipped_.other_domain_documents;
        if (skipped_.other_domains.size() < 100 || skipped_.other_domains.count(name))
          ++skipped_.other_domains[name];
        continue;
      }
      doc.domain = int(it - domains_.begin());
    }
    doc.text = *text;
    if (doc.text.empty()) {
      ++skipped_.empty_text;
      continue;
    }
    bytes_read_ = before + stream.offset();
    take(std::move(doc));
  }
}

}  // namespace demix::data
