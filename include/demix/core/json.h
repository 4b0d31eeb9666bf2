#pragma once

// JSON through nlohmann-json. Objects keep their keys in the order they were written (the order
// of every report, manifest and metrics line). Files are pretty-printed (two-space indent),
// metrics lines and safetensors headers compact. Numbers: integers exactly, doubles in the
// shortest form that reads back to the same double, NaN and infinities as null.

#include <nlohmann/json.hpp>
#include <string>

namespace demix {

using Json = nlohmann::ordered_json;

// `value` as text: compact on one line (indent -1), else pretty-printed with `indent` spaces. Bytes
// that are not UTF-8 are written as U+FFFD.
std::string json_text(const Json& value, int indent = -1);
// Writes `value` to `path` atomically (write_file_atomic), pretty-printed, with a final newline.
void write_json_file(const std::string& path, const Json& value);

// Parses `text` (the content of `path`, a `what` such as "manifest"); throws Error naming `path`
// on malformed JSON, in one line: "<path>: malformed <what> (JSON): <where and why>".
Json parse_json(const std::string& text, const std::string& path, const std::string& what);
// Reads and parses the file `path`; throws Error naming it when it cannot be read or parsed.
Json read_json_file(const std::string& path, const std::string& what);

// A nlohmann-json exception's message without its "[json.exception.type_error.302] " prefix:
// "key 'bytes' not found", "type must be number, but is string".
std::string json_message(const nlohmann::json::exception& e);

}  // namespace demix
