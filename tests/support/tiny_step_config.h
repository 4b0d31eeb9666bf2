#pragma once

// configs/tiny.yaml cut to 2 layers for tests that compare single training steps (on the bundled
// corpus): no clipping, so that a step's gradients are the backward's own, and its own run
// directory under the temp dir, emptied first.

#include <filesystem>
#include <string>

#include "demix/core/config.h"

namespace demix::test_support {

inline Config tiny_step_config(const std::string& device, const std::string& precision = "fp32",
                               const std::string& run = "") {
  const auto out = std::filesystem::temp_directory_path() / ("demix_step_test_" + device + run);
  std::filesystem::remove_all(out);
  return load_config(
      "configs/tiny.yaml",
      {"model.n_layer=2", "train.device=" + device, "train.precision=" + precision,
       "optim.grad_clip=0", "optim.warmup_steps=1", "train.out_dir=" + out.string()});
}

}  // namespace demix::test_support
