#pragma once

#include <c10/core/Device.h>

#include <string>

namespace demix {

// "cpu", "cuda" or "cuda:N"; throws Error if CUDA is asked for and none is present.
c10::Device resolve_device(const std::string& name);

}  // namespace demix
