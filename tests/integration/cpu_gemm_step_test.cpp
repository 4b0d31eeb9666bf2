// A training step with the CPU GEMMs through OpenBLAS (ops/cpu/cpu_gemm.h) computes what the same
// step computes through ATen's: loss, gradient norm and every gradient, on the bundled corpus,
// with the experts on two threads.

#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "demix/train/trainer.h"
#include "support/scoped_policy.h"
#include "support/step_comparison.h"
#include "support/tensor_compare.h"

namespace demix {
namespace {

using test_support::CpuGemmLibrary;
using test_support::relative_norm_difference;

TEST(CpuGemmStepTest, OpenBlasStepEqualsTheAtenStep) {
  const int threads = at::get_num_threads();
  at::set_num_threads(2);
  train::Trainer aten(test_support::tiny_step_config("cpu", "fp32", "_aten")),
      openblas(test_support::tiny_step_config("cpu", "fp32", "_openblas"));
  // Set per step: each trainer set the process-wide library from its config when built.
  const auto step = [](train::Trainer& trainer, ops::CpuGemm library) {
    const CpuGemmLibrary use(library);
    return trainer.train_step();
  };
  for (int i = 0; i < 2; ++i) {
    const auto want = step(aten, ops::CpuGemm::kAten);
    const auto got = step(openblas, ops::CpuGemm::kOpenBlas);
    // The second step starts from weights one AdamW update apart by rounding only.
    EXPECT_LT(relative_norm_difference(got.loss, want.loss), i == 0 ? 1e-5 : 1e-4) << i;
    EXPECT_LT(relative_norm_difference(got.grad_norm, want.grad_norm), 1e-4) << i;
    if (i == 0) test_support::expect_same_gradients(openblas, aten, 1e-4);
  }
  at::set_num_threads(threads);
}

}  // namespace
}  // namespace demix
