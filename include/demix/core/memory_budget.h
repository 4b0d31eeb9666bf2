#pragma once

// A model too large for the machine must be refused with its numbers before anything is
// allocated: an allocation that fails deep inside LibTorch (or the kernel's OOM killer) is no
// message a user can act on.

#include <c10/core/Device.h>

#include <cstdint>
#include <string>

namespace demix {

// What a new allocation can count on: on the host, /proc/meminfo's MemAvailable, or less where a
// cgroup limit or RLIMIT_AS leaves less; on a CUDA device, its total memory. 0 if unknown.
uint64_t available_memory_bytes(const c10::Device& device);

// Throws Error when `bytes`, an estimate of what is about to be allocated on `device`, exceed what
// is available there; `what` names the allocation and the config keys behind it.
void require_memory(uint64_t bytes, const c10::Device& device, const std::string& what);

}  // namespace demix
