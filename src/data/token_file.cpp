#include "demix/data/token_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "demix/core/error.h"
#include "demix/core/file.h"

namespace demix::data {
namespace {

constexpr char kMagic[8] = {'D', 'E', 'M', 'I', 'X', 'T', 'O', 'K'};
constexpr uint32_t kVersion = 1;
constexpr size_t kHeaderBytes = 64;

struct RawHeader {
  char magic[8];
  uint32_t version;
  uint32_t token_bytes;
  TokenFileHeader fields;
};
static_assert(sizeof(RawHeader) <= kHeaderBytes);

}  // namespace

void write_token_file(const std::string& path, const std::vector<uint16_t>& tokens,
                      TokenFileHeader header) {
  header.tokens = tokens.size();
  char bytes[kHeaderBytes] = {};
  RawHeader raw{};
  std::memcpy(raw.magic, kMagic, sizeof(kMagic));
  raw.version = kVersion;
  raw.token_bytes = sizeof(uint16_t);
  raw.fields = header;
  std::memcpy(bytes, &raw, sizeof(raw));

  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  const std::string tmp = temp_path_for(path);
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(bytes, kHeaderBytes);
    out.write(reinterpret_cast<const char*>(tokens.data()),
              std::streamsize(tokens.size() * sizeof(uint16_t)));
    if (!out.flush()) {
      std::filesystem::remove(tmp);
      throw Error(path + ": write failed");
    }
  }
  std::filesystem::rename(tmp, path);
}

TokenFile::TokenFile(const std::string& path) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0)
    throw Error(path + ": cannot open token file (run `demix data` to encode the corpus)");
  struct stat st {};
  ::fstat(fd, &st);
  mapping_bytes_ = size_t(st.st_size);
  if (mapping_bytes_ < kHeaderBytes) {
    ::close(fd);
    throw Error(path + ": too short for a token file header");
  }
  mapping_ = ::mmap(nullptr, mapping_bytes_, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (mapping_ == MAP_FAILED) {
    mapping_ = nullptr;
    throw Error(path + ": mmap failed");
  }
  RawHeader raw{};
  std::memcpy(&raw, mapping_, sizeof(raw));
  const auto fail = [&](const std::string& why) {
    ::munmap(mapping_, mapping_bytes_);
    mapping_ = nullptr;
    throw Error(path + ": " + why + " (re-encode with `demix data`)");
  };
  if (std::memcmp(raw.magic, kMagic, sizeof(kMagic)) != 0) fail("not a demix token file");
  if (raw.version != kVersion)
    fail("token file version " + std::to_string(raw.version) + ", expected " +
         std::to_string(kVersion));
  if (raw.token_bytes != sizeof(uint16_t)) fail("expected 2-byte tokens");
  header_ = raw.fields;
  if (kHeaderBytes + header_.tokens * sizeof(uint16_t) != mapping_bytes_)
    fail("size does not match its header's " + std::to_string(header_.tokens) + " tokens");
  tokens_ = reinterpret_cast<const uint16_t*>(static_cast<const char*>(mapping_) + kHeaderBytes);
}

TokenFile::~TokenFile() {
  if (mapping_) ::munmap(mapping_, mapping_bytes_);
}

}  // namespace demix::data
