#include "demix/core/manifest.h"

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <vector>

#include "demix/core/error.h"
#include "demix/core/file.h"
#include "demix/core/hash.h"
#include "demix/core/json.h"

namespace demix {
namespace fs = std::filesystem;

std::string file_checksum(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot be read");
  std::array<uint64_t, 4> lanes = {1, 2, 3, 4};  // independent chains: no latency bound
  std::vector<char> buffer(size_t(1) << 20);
  uint64_t total = 0;
  while (in) {
    in.read(buffer.data(), std::streamsize(buffer.size()));
    const auto n = size_t(in.gcount());
    if (n == 0) break;
    std::memset(buffer.data() + n, 0, (32 - n % 32) % 32);  // the tail word is zero-padded
    for (size_t i = 0; i < n; i += 32)
      for (size_t lane = 0; lane < 4; ++lane) {
        uint64_t word;
        std::memcpy(&word, buffer.data() + i + 8 * lane, 8);
        lanes[lane] = mix64(lanes[lane] ^ word);
      }
    total += n;
  }
  uint64_t h = total;  // the length too: zero padding cannot hide a truncation
  for (uint64_t lane : lanes) h = hash_combine(h, lane);
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(h));
  return hex;
}

void write_manifest(const std::string& dir) {
  std::vector<std::string> files;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    const auto rel = fs::relative(entry.path(), dir).generic_string();
    if (entry.is_regular_file() && rel != "manifest.json") files.push_back(rel);
  }
  std::sort(files.begin(), files.end());
  Json items = Json::array();
  for (const auto& rel : files) {
    const auto path = (fs::path(dir) / rel).string();
    items.push_back(
        {{"path", rel}, {"bytes", fs::file_size(path)}, {"checksum", file_checksum(path)}});
  }
  write_json_file((fs::path(dir) / "manifest.json").string(), {{"files", items}});
}

Manifest::Manifest(const std::string& dir) : dir_(dir) {
  const auto path = (fs::path(dir) / "manifest.json").string();
  if (!fs::exists(path))
    throw Error(dir +
                ": no manifest.json (an incomplete checkpoint, or one from before manifests)");
  const auto manifest = read_json_file(path, "manifest");
  const auto files = manifest.is_object() ? manifest.find("files") : manifest.end();
  if (files == manifest.end() || !files->is_array())
    throw Error(path + ": expected a list under 'files'");
  try {
    for (const auto& item : *files) {
      if (!item.at("bytes").is_number_unsigned())
        throw Error(path + ": 'bytes' of " + item.at("path").dump() + " is not a count");
      files_[item.at("path").get<std::string>()] = {item.at("bytes").get<uintmax_t>(),
                                                    item.at("checksum").get<std::string>()};
    }
  } catch (const nlohmann::json::exception& e) {
    throw Error(path + ": unreadable manifest: " + json_message(e));
  }
}

void Manifest::check_size(const std::string& rel, const Entry& entry) const {
  const auto path = (fs::path(dir_) / rel).string();
  if (!fs::is_regular_file(path)) throw Error(path + ": missing (listed in manifest.json)");
  const auto size = fs::file_size(path);
  if (size != entry.bytes)
    throw Error(path + ": " + std::to_string(size) + " bytes, manifest.json says " +
                std::to_string(entry.bytes) + (size < entry.bytes ? " (truncated)" : ""));
}

void Manifest::check_sizes() const {
  for (const auto& [rel, entry] : files_) check_size(rel, entry);
}

void Manifest::verify(const std::string& rel) const {
  const auto it = files_.find(rel);
  const auto path = (fs::path(dir_) / rel).string();
  if (it == files_.end()) throw Error(path + ": not listed in manifest.json");
  check_size(rel, it->second);
  if (file_checksum(path) != it->second.checksum)
    throw Error(path + ": checksum differs from manifest.json (corrupted)");
}

void Manifest::verify_all() const {
  for (const auto& [rel, entry] : files_) verify(rel);
}

}  // namespace demix
