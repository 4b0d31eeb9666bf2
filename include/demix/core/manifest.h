#pragma once

// A directory's manifest: manifest.json lists every file under it (relative path, size in bytes,
// 64-bit checksum) and is written last, so a directory with a manifest is complete. Checks name
// the first missing, truncated or corrupted file. Checkpoints use it (checkpoint/checkpoint.h).

#include <cstdint>
#include <map>
#include <string>

namespace demix {

// Checksum of a file's bytes (hex): four interleaved splitmix64 lanes over 8-byte words and the
// length. Detects corruption and truncation; not a cryptographic hash.
std::string file_checksum(const std::string& path);

// Writes <dir>/manifest.json (atomically) over every regular file under `dir` except itself.
void write_manifest(const std::string& dir);

class Manifest {
 public:
  // Throws demix::Error when <dir>/manifest.json is missing or unreadable.
  explicit Manifest(const std::string& dir);
  // Every listed file exists with its listed size (cheap: no file is read).
  void check_sizes() const;
  // One listed file (path relative to the directory): size and checksum.
  void verify(const std::string& relative_path) const;
  void verify_all() const;

 private:
  struct Entry {
    uintmax_t bytes = 0;
    std::string checksum;
  };
  void check_size(const std::string& relative_path, const Entry& entry) const;
  std::string dir_;
  std::map<std::string, Entry> files_;
};

}  // namespace demix
