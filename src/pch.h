// Precompiled once for the library, the CLI and the tests: torch/torch.h alone costs ~20 s a file.
#pragma once
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <string>
#include <vector>
