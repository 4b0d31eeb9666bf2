#pragma once

// For tests that compare single training steps of two trainers (on the bundled corpus): the
// config they train, and the comparison of their gradients.

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "demix/core/config.h"
#include "demix/train/trainer.h"
#include "support/tensor_compare.h"

namespace demix::test_support {

// configs/tiny.yaml cut to 2 layers, without clipping (a step's gradients are then the backward's
// own), in its own run directory under the temp dir, emptied first.
inline Config tiny_step_config(const std::string& device, const std::string& precision = "fp32",
                               const std::string& run = "") {
  const auto out = std::filesystem::temp_directory_path() / ("demix_step_test_" + device + run);
  std::filesystem::remove_all(out);
  return load_config(
      "configs/tiny.yaml",
      {"model.n_layer=2", "train.device=" + device, "train.precision=" + precision,
       "optim.grad_clip=0", "optim.warmup_steps=1", "train.out_dir=" + out.string()});
}

// Every parameter of `got` has a gradient where `want`'s has one, within `tolerance` of it
// (relative norm difference).
inline void expect_same_gradients(train::Trainer& got, train::Trainer& want, double tolerance) {
  const auto want_params = want.model().named_parameters();
  for (const auto& item : got.model().named_parameters()) {
    const auto& want_grad = want_params[item.key()].grad();
    ASSERT_EQ(item.value().grad().defined(), want_grad.defined()) << item.key();
    if (want_grad.defined())
      EXPECT_LT(relative_norm_difference(item.value().grad(), want_grad), tolerance) << item.key();
  }
}

}  // namespace demix::test_support
