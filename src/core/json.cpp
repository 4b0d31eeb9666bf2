#include "demix/core/json.h"

#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "demix/core/error.h"

namespace demix {

std::string json_quote(std::string_view text) {
  std::string out = "\"";
  for (const char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

JsonObject& JsonObject::raw(std::string_view key, const std::string& json) {
  if (!body_.empty()) body_ += ", ";
  body_ += json_quote(key) + ": " + json;
  return *this;
}

JsonObject& JsonObject::add(std::string_view key, double value) {
  if (!std::isfinite(value)) return raw(key, "null");
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.9g", value);
  return raw(key, buf);
}
JsonObject& JsonObject::add(std::string_view key, int64_t value) {
  return raw(key, std::to_string(value));
}
JsonObject& JsonObject::add(std::string_view key, uint64_t value) {
  return raw(key, std::to_string(value));
}
JsonObject& JsonObject::add(std::string_view key, bool value) {
  return raw(key, value ? "true" : "false");
}
JsonObject& JsonObject::add(std::string_view key, std::string_view value) {
  return raw(key, json_quote(value));
}
JsonObject& JsonObject::add(std::string_view key, const std::vector<std::string>& values) {
  std::string list = "[";
  for (size_t i = 0; i < values.size(); ++i) list += (i ? ", " : "") + json_quote(values[i]);
  return raw(key, list + "]");
}
JsonObject& JsonObject::add(std::string_view key, const std::vector<double>& values) {
  std::string list = "[";
  for (size_t i = 0; i < values.size(); ++i) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%.17g", values[i]);
    list += (i ? ", " : "") + std::string(buf);
  }
  return raw(key, list + "]");
}
JsonObject& JsonObject::add(std::string_view key, const JsonObject& value) {
  return raw(key, value.str());
}
JsonObject& JsonObject::add_array(std::string_view key, const std::vector<JsonObject>& values) {
  std::string list = "[";
  for (size_t i = 0; i < values.size(); ++i) list += (i ? ",\n  " : "") + values[i].str();
  return raw(key, list + "]");
}

std::string temp_path_for(const std::string& path) {
  static std::atomic<uint64_t> counter{0};
  return path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
}

void write_file_atomic(const std::string& path, const std::string& text) {
  const auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent);
  const std::string tmp = temp_path_for(path);
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    if (!out.flush()) {
      std::filesystem::remove(tmp);
      throw Error(path + ": cannot write");
    }
  }
  std::filesystem::rename(tmp, path);
}

}  // namespace demix
