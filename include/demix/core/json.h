#pragma once

// A minimal JSON object writer for metrics lines, eval reports and checkpoint metadata. Reading
// goes through yaml-cpp (JSON is YAML) or Python's json module.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace demix {

std::string json_quote(std::string_view text);

class JsonObject {
 public:
  JsonObject& add(std::string_view key, double value);
  JsonObject& add(std::string_view key, int64_t value);
  JsonObject& add(std::string_view key, uint64_t value);
  JsonObject& add(std::string_view key, int value) { return add(key, int64_t(value)); }
  JsonObject& add(std::string_view key, bool value);
  JsonObject& add(std::string_view key, std::string_view value);
  JsonObject& add(std::string_view key, const char* value) {
    return add(key, std::string_view(value));
  }
  JsonObject& add(std::string_view key, const std::vector<std::string>& values);
  JsonObject& add(std::string_view key, const std::vector<double>& values);  // exact (%.17g)
  JsonObject& add(std::string_view key, const JsonObject& value);
  JsonObject& add_array(std::string_view key, const std::vector<JsonObject>& values);
  std::string str() const { return "{" + body_ + "}"; }

 private:
  JsonObject& raw(std::string_view key, const std::string& json);
  std::string body_;
};

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
