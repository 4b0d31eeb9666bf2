#pragma once

// Tensor files in the safetensors format: an 8-byte little-endian header length, a JSON header
// mapping each name to {dtype, shape, data_offsets}, then the raw little-endian bytes. Python
// reads them with safetensors.torch.load_file, Hugging Face loads them directly, and they hold no
// code. (torch::pickle_save output needs an allow-listed global under
// torch.load(weights_only=True).)

#include <ATen/core/Tensor.h>

#include <map>
#include <string>

namespace demix {

using TensorDict = std::map<std::string, at::Tensor>;

// Writes atomically (temporary file, then rename). `metadata` goes into "__metadata__".
void save_safetensors(const std::string& path, const TensorDict& tensors,
                      const std::map<std::string, std::string>& metadata = {});
// Throws Error naming the file on a missing, truncated or malformed file.
TensorDict load_safetensors(const std::string& path);
// The file's "__metadata__" (empty when it has none), read from its header alone.
std::map<std::string, std::string> safetensors_metadata(const std::string& path);

}  // namespace demix
