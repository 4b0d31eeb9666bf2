#pragma once

// Files written whole: a reader sees the old content or the new, never half of either.

#include <string>

namespace demix {

// Writes `text` to `path` through a temporary file and a rename, so readers never see half a file:
// the file is fsynced before the rename and its directory after it, so after a power loss `path`
// holds the old text or the new. Throws Error naming `path` on any failure (a full disk, a failed
// fsync or close) and leaves no temporary file behind.
void write_file_atomic(const std::string& path, const std::string& text);
// fsyncs a directory, making the renames and creations of its entries durable.
void sync_directory(const std::string& dir);
// A temporary name beside `path`, unique to this process and call: writers of the same file in
// several processes (ranks, parallel tests) never share one.
std::string temp_path_for(const std::string& path);

}  // namespace demix
