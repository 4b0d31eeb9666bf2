#include "demix/core/safetensors.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <iterator>

#include "demix/core/error.h"
#include "demix/core/file.h"
#include "demix/core/json.h"

namespace demix {
namespace {

const std::map<at::ScalarType, std::string> kDtypeNames = {
    {at::kFloat, "F32"}, {at::kDouble, "F64"}, {at::kHalf, "F16"}, {at::kBFloat16, "BF16"},
    {at::kLong, "I64"},  {at::kInt, "I32"},    {at::kByte, "U8"},  {at::kBool, "BOOL"}};

at::ScalarType dtype_of(const std::string& name, const std::string& path) {
  for (const auto& [type, n] : kDtypeNames)
    if (n == name) return type;
  throw Error(path + ": unsupported safetensors dtype " + name);
}

}  // namespace

void save_safetensors(const std::string& path, const TensorDict& tensors,
                      const std::map<std::string, std::string>& metadata) {
  std::vector<at::Tensor> contiguous;
  Json json = Json::object();
  uint64_t offset = 0;
  if (!metadata.empty()) json["__metadata__"] = metadata;
  for (const auto& [name, tensor] : tensors) {  // std::map: names sorted, as the format asks
    auto t = tensor.detach().to(at::kCPU).contiguous();
    const auto dtype = kDtypeNames.find(t.scalar_type());
    TORCH_CHECK(dtype != kDtypeNames.end(), "safetensors: unsupported dtype for ", name);
    const uint64_t bytes = t.numel() * t.element_size();
    json[name] = {{"dtype", dtype->second},
                  {"shape", t.sizes().vec()},
                  {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    contiguous.push_back(t);
  }
  std::string header = json.dump();
  header.append((8 - header.size() % 8) % 8, ' ');  // keeps the data 8-byte aligned
  std::string file(8, '\0');
  const uint64_t header_size = header.size();
  std::memcpy(file.data(), &header_size, 8);  // x86-64 and aarch64 are little-endian
  file += header;
  file.reserve(file.size() + offset);
  for (const auto& t : contiguous)
    file.append(static_cast<const char*>(t.data_ptr()), t.numel() * t.element_size());
  write_file_atomic(path, file);
}

namespace {

// The JSON header of a safetensors file whose first `available` bytes are in `in`.
Json read_header(std::istream& in, uint64_t available, const std::string& path,
                 uint64_t& header_size) {
  char size_bytes[8];
  if (available < 8 || !in.read(size_bytes, 8))
    throw Error(path + ": truncated (no safetensors header)");
  std::memcpy(&header_size, size_bytes, 8);  // x86-64 and aarch64 are little-endian
  if (header_size > available - 8) throw Error(path + ": truncated safetensors header");
  std::string text(header_size, '\0');
  if (!in.read(text.data(), std::streamsize(header_size)))
    throw Error(path + ": truncated safetensors header");
  auto header = parse_json(text, path, "safetensors header");
  if (!header.is_object()) throw Error(path + ": corrupt safetensors header: expected an object");
  return header;
}

// entry[key], a list of integers of type T (no fractions, booleans or, for unsigned T, negatives).
template <class T>
std::vector<T> integers(const Json& entry, const char* key, const std::string& path,
                        const std::string& name) {
  const auto& list = entry.at(key);
  const auto is_t = [](const Json& value) {
    return value.is_number_integer() && (!std::is_unsigned_v<T> || value.is_number_unsigned());
  };
  if (!list.is_array() || !std::all_of(list.begin(), list.end(), is_t))
    throw Error(path + ": corrupt safetensors header: tensor '" + name + "': '" + key +
                "' must be a list of integers, not " + list.dump());
  return list.get<std::vector<T>>();
}

std::ifstream open_tensor_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open tensor file");
  return in;
}

uint64_t file_size(std::ifstream& in) {
  in.seekg(0, std::ios::end);
  const auto size = uint64_t(in.tellg());
  in.seekg(0);
  return size;
}

}  // namespace

std::map<std::string, std::string> safetensors_metadata(const std::string& path) {
  auto in = open_tensor_file(path);
  uint64_t header_size = 0;
  const auto header = read_header(in, file_size(in), path, header_size);
  std::map<std::string, std::string> out;
  const auto meta = header.find("__metadata__");
  if (meta == header.end()) return out;
  if (!meta->is_object()) throw Error(path + ": '__metadata__' is not a map of strings");
  for (const auto& [key, value] : meta->items()) {
    if (!value.is_string())
      throw Error(path + ": corrupt safetensors metadata: '" + key + "' is not a string");
    out[key] = value.get<std::string>();
  }
  return out;
}

TensorDict load_safetensors(const std::string& path) {
  auto in = open_tensor_file(path);
  const auto size = file_size(in);
  uint64_t header_size = 0;
  const auto header = read_header(in, size, path, header_size);
  std::string file(size, '\0');  // offsets below count from the file's start
  in.seekg(0);
  if (!in.read(file.data(), std::streamsize(size))) throw Error(path + ": cannot read tensor file");
  const uint64_t data_start = 8 + header_size;
  TensorDict out;
  try {
    for (const auto& [name, entry] : header.items()) {
      if (name == "__metadata__") continue;
      const auto dtype = dtype_of(entry.at("dtype").get<std::string>(), path);
      const auto shape = integers<int64_t>(entry, "shape", path, name);
      const auto offsets = integers<uint64_t>(entry, "data_offsets", path, name);
      // Size from the header, checked against the file before anything is allocated (found by
      // fuzzing: a negative or huge dimension, offsets that wrap around).
      uint64_t bytes = c10::elementSize(dtype);
      for (const int64_t d : shape) {
        if (d < 0 || (d > 0 && bytes > (file.size() - data_start) / uint64_t(d)))
          throw Error(path + ": tensor '" + name + "' has an impossible shape " +
                      c10::str(at::IntArrayRef(shape)) + " for its file");
        bytes *= uint64_t(d);
      }
      if (offsets.size() != 2 || offsets[0] > offsets[1] || offsets[1] > file.size() - data_start ||
          offsets[1] - offsets[0] != bytes)
        throw Error(path + ": tensor '" + name + "' lies outside the file (truncated?)");
      auto t = at::empty(shape, at::TensorOptions().dtype(dtype));
      std::memcpy(t.data_ptr(), file.data() + data_start + offsets[0], bytes);
      out[name] = t;
    }
  } catch (const nlohmann::json::exception& e) {
    throw Error(path + ": corrupt safetensors header: " + json_message(e));
  }
  return out;
}

}  // namespace demix
