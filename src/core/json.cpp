#include "demix/core/json.h"

#include <fstream>
#include <iterator>

#include "demix/core/error.h"
#include "demix/core/file.h"

namespace demix {

std::string json_message(const nlohmann::json::exception& e) {
  const std::string message = e.what();  // "[json.exception.name.id] what"
  const auto end = message.find("] ");
  return message.rfind("[json.exception.", 0) == 0 && end != std::string::npos
             ? message.substr(end + 2)
             : message;
}

std::string json_text(const Json& value, int indent) {
  // Bytes that are not UTF-8 (a name or a text read from disk) become U+FFFD, not an exception.
  return value.dump(indent, ' ', false, Json::error_handler_t::replace);
}

void write_json_file(const std::string& path, const Json& value) {
  write_file_atomic(path, json_text(value, 2) + "\n");
}

Json parse_json(const std::string& text, const std::string& path, const std::string& what) {
  try {
    return Json::parse(text);
  } catch (const nlohmann::json::exception& e) {  // a parse_error, or a number out of range
    throw Error(path + ": malformed " + what + " (JSON): " + json_message(e));
  }
}

Json read_json_file(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot read " + what);
  const std::string text((std::istreambuf_iterator<char>(in)), {});
  return parse_json(text, path, what);
}

}  // namespace demix
