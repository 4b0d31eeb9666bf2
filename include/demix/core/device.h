#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <string>

namespace demix {

// "cpu", "cuda" or "cuda:N"; throws Error if CUDA is asked for and none is present.
c10::Device resolve_device(const std::string& name);

// A host tensor on `device`. To a GPU the copy goes through pinned memory and is queued on the
// current stream without waiting (a plain .to(cuda) blocks the host until the GPU has caught up,
// which stalls the next step's kernel launches behind the previous step's work).
at::Tensor to_device(const at::Tensor& host, const c10::Device& device);

// The most device memory tensors held since the last reset (CUDA's caching allocator), in bytes;
// 0 on the CPU, where the peak resident set size is the measure.
int64_t peak_device_memory_bytes(const c10::Device& device);
void reset_peak_device_memory(const c10::Device& device);
// Returns the allocator's cached, unused blocks to the device (for another process on it).
void release_cached_device_memory(const c10::Device& device);

}  // namespace demix
