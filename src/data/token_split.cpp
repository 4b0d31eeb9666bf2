#include "demix/data/token_split.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "demix/core/error.h"
#include "demix/core/file.h"
#include "demix/core/json.h"

namespace demix::data {
namespace fs = std::filesystem;
namespace {

constexpr char kMagic[8] = {'D', 'E', 'M', 'I', 'X', 'T', 'O', 'K'};
constexpr uint32_t kVersion = 2;
constexpr size_t kHeaderBytes = 64;
constexpr int kIndexVersion = 1;

struct RawHeader {
  char magic[8];
  uint32_t version;
  uint32_t token_bytes;
  uint64_t tokens;
  uint64_t documents;
  uint64_t text_bytes;
  uint64_t vocab_size;
  uint64_t tokenizer_fingerprint;
};
static_assert(sizeof(RawHeader) <= kHeaderBytes);

std::string shard_name(size_t i) {
  char name[32];
  std::snprintf(name, sizeof(name), "%05zu.bin", i);
  return name;
}

std::string hex(uint64_t value) {
  char text[17];
  std::snprintf(text, sizeof(text), "%016llx", static_cast<unsigned long long>(value));
  return text;
}

}  // namespace

TokenSplit::TokenSplit(const std::string& dir) : path_(dir) {
  const auto index_path = dir + "/index.json";
  if (!fs::exists(index_path)) {
    if (fs::exists(dir + ".bin"))
      throw Error(dir + ".bin: a token file of an older demix (run `demix data` to re-encode)");
    throw Error(dir + ": no encoded split here (run `demix data` to encode the corpus)");
  }
  const auto index = read_json_file(index_path, "split index");
  std::vector<std::pair<std::string, uint64_t>> listed;  // (file, tokens)
  try {
    if (index.at("version").get<int>() != kIndexVersion)
      throw Error(index_path + ": index version " + index.at("version").dump() + ", expected " +
                  std::to_string(kIndexVersion) + " (re-encode with `demix data`)");
    info_.tokens = index.at("tokens").get<uint64_t>();
    info_.documents = index.at("documents").get<uint64_t>();
    info_.text_bytes = index.at("text_bytes").get<uint64_t>();
    info_.vocab_size = index.at("vocab_size").get<uint64_t>();
    info_.token_bytes = index.at("token_bytes").get<uint32_t>();
    info_.tokenizer_fingerprint =
        std::stoull(index.at("tokenizer_fingerprint").get<std::string>(), nullptr, 16);
    info_.signature = index.at("signature").get<std::string>();
    for (const auto& shard : index.at("shards"))
      listed.emplace_back(shard.at("file").get<std::string>(), shard.at("tokens").get<uint64_t>());
  } catch (const nlohmann::json::exception& e) {
    throw Error(index_path + ": malformed split index: " + json_message(e));
  } catch (const std::logic_error&) {  // stoull
    throw Error(index_path + ": malformed split index: tokenizer_fingerprint is not hex");
  }
  if (info_.token_bytes != 2 && info_.token_bytes != 4)
    throw Error(index_path + ": token_bytes " + std::to_string(info_.token_bytes) +
                ", expected 2 or 4");
  uint64_t total = 0;
  for (const auto& [file, tokens] : listed) {
    const auto path = dir + "/" + file;
    Shard shard;
    const auto fail = [&](const std::string& why) {
      if (shard.mapping) ::munmap(shard.mapping, shard.mapping_bytes);
      throw Error(path + ": " + why + " (re-encode with `demix data`)");
    };
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail("cannot open this shard of the split");
    struct stat st {};
    ::fstat(fd, &st);
    shard.mapping_bytes = size_t(st.st_size);
    if (shard.mapping_bytes < kHeaderBytes) {
      ::close(fd);
      fail("too short for a token file header");
    }
    shard.mapping = ::mmap(nullptr, shard.mapping_bytes, PROT_READ, MAP_PRIVATE, fd, 0);
    ::close(fd);
    if (shard.mapping == MAP_FAILED) {
      shard.mapping = nullptr;
      fail("mmap failed");
    }
    RawHeader raw{};
    std::memcpy(&raw, shard.mapping, sizeof(raw));
    if (std::memcmp(raw.magic, kMagic, sizeof(kMagic)) != 0) fail("not a demix token file");
    if (raw.version != kVersion)
      fail("token file version " + std::to_string(raw.version) + ", expected " +
           std::to_string(kVersion));
    if (raw.token_bytes != info_.token_bytes || raw.tokens != tokens ||
        raw.tokenizer_fingerprint != info_.tokenizer_fingerprint)
      fail("its header does not match " + index_path);
    if (kHeaderBytes + raw.tokens * raw.token_bytes != shard.mapping_bytes)
      fail("size does not match its header's " + std::to_string(raw.tokens) + " tokens");
    shard.tokens = static_cast<const char*>(shard.mapping) + kHeaderBytes;
    shard.size = raw.tokens;
    first_.push_back(total);
    total += raw.tokens;
    shards_.push_back(shard);
  }
  if (total != info_.tokens)
    throw Error(index_path + ": its shards hold " + std::to_string(total) + " tokens, it says " +
                std::to_string(info_.tokens) + " (re-encode with `demix data`)");
}

TokenSplit::TokenSplit(std::vector<uint32_t> tokens, SplitInfo info, std::string name)
    : path_(std::move(name)), info_(std::move(info)), owned_(std::move(tokens)) {
  info_.tokens = owned_.size();
  info_.token_bytes = 4;
  shards_.push_back({owned_.data(), owned_.size(), nullptr, 0});
  first_.push_back(0);
}

TokenSplit::~TokenSplit() {
  for (auto& shard : shards_)
    if (shard.mapping) ::munmap(shard.mapping, shard.mapping_bytes);
}

void TokenSplit::read(uint64_t start, uint64_t count, int64_t* out) const {
  if (start + count > size() || start + count < start)
    throw Error(path_ + ": tokens [" + std::to_string(start) + ", " +
                std::to_string(start + count) + ") past its " + std::to_string(size()));
  size_t s = size_t(std::upper_bound(first_.begin(), first_.end(), start) - first_.begin()) - 1;
  while (count > 0) {
    const auto& shard = shards_[s];
    const uint64_t offset = start - first_[s];
    const uint64_t n = std::min(count, shard.size - offset);
    if (info_.token_bytes == 2) {
      const auto* src = static_cast<const uint16_t*>(shard.tokens) + offset;
      std::copy(src, src + n, out);
    } else {
      const auto* src = static_cast<const uint32_t*>(shard.tokens) + offset;
      std::copy(src, src + n, out);
    }
    out += n;
    start += n;
    count -= n;
    ++s;
  }
}

std::pair<uint32_t, uint64_t> TokenSplit::max_token() const {
  std::pair<uint32_t, uint64_t> best{0, 0};
  bool found = false;
  for (size_t s = 0; s < shards_.size(); ++s) {
    const auto& shard = shards_[s];
    auto consider = [&](const auto* tokens) {
      if (shard.size == 0) return;
      const auto max = std::max_element(tokens, tokens + shard.size);
      if (!found || *max > best.first) best = {uint32_t(*max), first_[s] + uint64_t(max - tokens)};
      found = true;
    };
    if (info_.token_bytes == 2)
      consider(static_cast<const uint16_t*>(shard.tokens));
    else
      consider(static_cast<const uint32_t*>(shard.tokens));
  }
  return best;
}

SplitWriter::SplitWriter(std::string dir, uint64_t shard_tokens, SplitInfo info)
    : dir_(std::move(dir)),
      tmp_dir_(temp_path_for(dir_)),
      shard_capacity_(shard_tokens),
      info_(std::move(info)),
      buffer_(1 << 20) {
  info_.tokens = info_.documents = info_.text_bytes = 0;
  std::error_code error;
  fs::create_directories(tmp_dir_, error);
  if (error) throw Error(tmp_dir_ + ": cannot create: " + error.message());
}

SplitWriter::~SplitWriter() {
  if (committed_) return;
  file_.reset();
  std::error_code ignored;
  fs::remove_all(tmp_dir_, ignored);
}

void SplitWriter::open_shard() {
  const auto path = tmp_dir_ + "/" + shard_name(shard_tokens_.size());
  file_ = {std::fopen(path.c_str(), "wb"), &std::fclose};
  if (!file_) throw Error(path + ": cannot write: " + std::strerror(errno));
  std::setvbuf(file_.get(), buffer_.data(), _IOFBF, buffer_.size());
  const char zeros[kHeaderBytes] = {};
  std::fwrite(zeros, 1, kHeaderBytes, file_.get());  // the header, once the counts are known
  shard_tokens_.push_back(0);
  shard_ = {};
}

void SplitWriter::close_shard() {
  if (!file_) return;
  RawHeader raw{};
  std::memcpy(raw.magic, kMagic, sizeof(kMagic));
  raw.version = kVersion;
  raw.token_bytes = info_.token_bytes;
  raw.tokens = shard_tokens_.back();
  raw.documents = shard_.documents;
  raw.text_bytes = shard_.text_bytes;
  raw.vocab_size = info_.vocab_size;
  raw.tokenizer_fingerprint = info_.tokenizer_fingerprint;
  char bytes[kHeaderBytes] = {};
  std::memcpy(bytes, &raw, sizeof(raw));
  const bool ok = std::fseek(file_.get(), 0, SEEK_SET) == 0 &&
                  std::fwrite(bytes, 1, kHeaderBytes, file_.get()) == kHeaderBytes &&
                  std::fflush(file_.get()) == 0 && ::fsync(::fileno(file_.get())) == 0;
  const auto path = tmp_dir_ + "/" + shard_name(shard_tokens_.size() - 1);
  if (!ok || std::fclose(file_.release()) != 0)
    throw Error(path + ": cannot write: " + std::strerror(errno));
}

void SplitWriter::append_document(const uint32_t* tokens, size_t count, uint64_t text_bytes) {
  uint16_t narrow[4096];
  for (size_t done = 0; done < count;) {
    if (!file_ || shard_tokens_.back() == shard_capacity_) {
      close_shard();
      open_shard();
    }
    const size_t n =
        size_t(std::min<uint64_t>(count - done, shard_capacity_ - shard_tokens_.back()));
    size_t written = 0;
    if (info_.token_bytes == 4) {
      written = std::fwrite(tokens + done, 4, n, file_.get());
    } else {
      for (size_t i = 0; i < n; i += std::size(narrow)) {
        const size_t m = std::min(std::size(narrow), n - i);
        std::copy(tokens + done + i, tokens + done + i + m, narrow);
        written += std::fwrite(narrow, 2, m, file_.get());
      }
    }
    if (written != n) throw Error(dir_ + ": cannot write its tokens: " + std::strerror(errno));
    shard_tokens_.back() += n;
    done += n;
  }
  if (!file_) open_shard();  // an empty document still counts in the current shard
  shard_.documents += 1;
  shard_.text_bytes += text_bytes;
  info_.tokens += count;
  info_.documents += 1;
  info_.text_bytes += text_bytes;
}

void SplitWriter::commit() {
  if (!file_ && shard_tokens_.empty()) open_shard();  // an empty split still has one shard
  close_shard();
  Json shards = Json::array();
  for (size_t i = 0; i < shard_tokens_.size(); ++i)
    shards.push_back({{"file", shard_name(i)}, {"tokens", shard_tokens_[i]}});
  write_json_file(tmp_dir_ + "/index.json",
                  {{"version", kIndexVersion},
                   {"tokens", info_.tokens},
                   {"documents", info_.documents},
                   {"text_bytes", info_.text_bytes},
                   {"vocab_size", info_.vocab_size},
                   {"token_bytes", info_.token_bytes},
                   {"tokenizer_fingerprint", hex(info_.tokenizer_fingerprint)},
                   {"signature", info_.signature},
                   {"shards", shards}});
  // Replace the old split, if any: move it aside first so the new one is never mixed with it.
  std::error_code error;
  const auto old = temp_path_for(dir_);
  if (fs::exists(dir_)) fs::rename(dir_, old, error);
  if (!error) fs::rename(tmp_dir_, dir_, error);
  if (error) throw Error(dir_ + ": cannot move the encoded split into place: " + error.message());
  fs::remove_all(old, error);
  fs::remove(dir_ + ".bin", error);  // a token file of the older, unsharded layout
  sync_directory(fs::path(dir_).parent_path().string());
  committed_ = true;
}

}  // namespace demix::data
