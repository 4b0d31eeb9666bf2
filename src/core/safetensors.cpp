#include "demix/core/safetensors.h"

#include <ATen/ATen.h>
#include <yaml-cpp/yaml.h>

#include <cstring>
#include <fstream>
#include <iterator>

#include "demix/core/error.h"
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
  std::string header = "{";
  uint64_t offset = 0;
  if (!metadata.empty()) {
    JsonObject meta;
    for (const auto& [k, v] : metadata) meta.add(k, v);
    header += "\"__metadata__\": " + meta.str();
  }
  for (const auto& [name, tensor] : tensors) {  // std::map: names sorted, as the format asks
    auto t = tensor.detach().to(at::kCPU).contiguous();
    const auto dtype = kDtypeNames.find(t.scalar_type());
    TORCH_CHECK(dtype != kDtypeNames.end(), "safetensors: unsupported dtype for ", name);
    std::string shape = "[";
    for (int64_t d = 0; d < t.dim(); ++d) shape += (d ? "," : "") + std::to_string(t.size(d));
    const uint64_t bytes = t.numel() * t.element_size();
    if (header.size() > 1) header += ", ";
    header += json_quote(name) + ": {\"dtype\": \"" + dtype->second + "\", \"shape\": " + shape +
              "], \"data_offsets\": [" + std::to_string(offset) + ", " +
              std::to_string(offset + bytes) + "]}";
    offset += bytes;
    contiguous.push_back(t);
  }
  header += "}";
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
YAML::Node read_header(std::istream& in, uint64_t available, const std::string& path,
                       uint64_t& header_size) {
  char size_bytes[8];
  if (available < 8 || !in.read(size_bytes, 8))
    throw Error(path + ": truncated (no safetensors header)");
  std::memcpy(&header_size, size_bytes, 8);  // x86-64 and aarch64 are little-endian
  if (header_size > available - 8) throw Error(path + ": truncated safetensors header");
  std::string text(header_size, '\0');
  if (!in.read(text.data(), std::streamsize(header_size)))
    throw Error(path + ": truncated safetensors header");
  YAML::Node header;
  try {
    header = YAML::Load(text);  // JSON is YAML
  } catch (const YAML::Exception& e) {
    throw Error(path + ": corrupt safetensors header: " + e.msg);
  }
  if (!header.IsMap()) throw Error(path + ": corrupt safetensors header");
  return header;
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
  try {
    const auto meta = header["__metadata__"];
    if (meta && !meta.IsMap()) throw Error(path + ": '__metadata__' is not a map of strings");
    if (meta)
      for (const auto& entry : meta)
        out[entry.first.as<std::string>()] = entry.second.as<std::string>();
  } catch (const YAML::Exception& e) {
    throw Error(path + ": corrupt safetensors metadata: " + e.msg);
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
    for (const auto& entry : header) {
      const auto name = entry.first.as<std::string>();
      if (name == "__metadata__") continue;
      const auto dtype = dtype_of(entry.second["dtype"].as<std::string>(), path);
      const auto shape = entry.second["shape"].as<std::vector<int64_t>>();
      const auto offsets = entry.second["data_offsets"].as<std::vector<uint64_t>>();
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
  } catch (const YAML::Exception& e) {
    throw Error(path + ": corrupt safetensors header: " + e.msg);
  }
  return out;
}

}  // namespace demix
