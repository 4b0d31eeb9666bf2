// GPU checks on the bundled corpus, skipped where no CUDA device is present (CI): a training step
// on the GPU computes what the same step computes on the CPU, with ATen's kernels and with the
// fused ones (ops/execution_policy.h), and steps queue their work without the host waiting for
// the GPU.

#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#ifdef DEMIX_CUDA
#include <c10/cuda/CUDAFunctions.h>
#endif

#include "demix/core/config.h"
#include "demix/train/trainer.h"
#include "support/scoped_policy.h"
#include "support/step_comparison.h"
#include "support/tensor_compare.h"

namespace demix {
namespace {

using test_support::relative_norm_difference;
using test_support::tiny_step_config;

#define SKIP_WITHOUT_CUDA() \
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device"

TEST(CudaTest, TrainStepOnTheGpuEqualsTheCpuStep) {
  SKIP_WITHOUT_CUDA();
  for (const bool fused : {false, true}) {
    SCOPED_TRACE(fused ? "fused CUDA kernels" : "ATen");
    train::Trainer cpu(tiny_step_config("cpu")), gpu(tiny_step_config("cuda"));
    const test_support::FusedCudaKernels kernels(fused);  // after the trainers set it from config
    for (int step = 0; step < 2; ++step) {
      const auto on_cpu = cpu.train_step(), on_gpu = gpu.train_step();
      // The second step starts from weights one AdamW update apart by rounding only.
      EXPECT_LT(relative_norm_difference(on_gpu.loss, on_cpu.loss), step == 0 ? 1e-5 : 1e-4)
          << step;
      EXPECT_LT(relative_norm_difference(on_gpu.grad_norm, on_cpu.grad_norm), 1e-4) << step;
      if (step == 0) test_support::expect_same_gradients(gpu, cpu, 1e-4);
    }
  }
}

// bf16 with the fused kernels against bf16 with ATen's: the same recipe (bf16 operands, fp32
// gradients), so the two differ by rounding order only.
TEST(CudaTest, FusedBf16StepMatchesTheAtenBf16Step) {
  SKIP_WITHOUT_CUDA();
  train::Trainer aten(tiny_step_config("cuda", "bf16", "_aten")),
      fused(tiny_step_config("cuda", "bf16", "_fused"));
  for (int step = 0; step < 2; ++step) {
    train::StepResult a, f;
    {
      const test_support::FusedCudaKernels kernels(false);
      a = aten.train_step();
    }
    {
      const test_support::FusedCudaKernels kernels(true);
      f = fused.train_step();
    }
    // The second step starts from weights one AdamW update apart by rounding only.
    EXPECT_LT(relative_norm_difference(f.loss, a.loss), step == 0 ? 1e-3 : 5e-3) << step;
    EXPECT_LT(relative_norm_difference(f.grad_norm, a.grad_norm), 1e-2) << step;
  }
}

TEST(CudaTest, Bf16StepLossIsCloseToTheFp32Loss) {
  SKIP_WITHOUT_CUDA();
  train::Trainer fp32(tiny_step_config("cpu")), bf16(tiny_step_config("cuda", "bf16"));
  EXPECT_LT(relative_norm_difference(bf16.train_step().loss, fp32.train_step().loss), 1e-2);
}

#ifdef DEMIX_CUDA
// Any synchronising CUDA call (a blocking copy, .item(), a stream synchronize) throws while the
// sync debug mode is L_ERROR: a step that makes none lets the host run ahead of the GPU.
TEST(CudaTest, TrainStepMakesNoHostSync) {
  SKIP_WITHOUT_CUDA();
  for (const bool fused : {false, true}) {
    SCOPED_TRACE(fused ? "fused CUDA kernels" : "ATen");
    train::Trainer gpu(tiny_step_config("cuda", "bf16"));
    const test_support::FusedCudaKernels kernels(fused);
    gpu.train_step();  // the first step creates handles and the pinned-memory pool
    auto& warnings = c10::cuda::warning_state();
    warnings.set_sync_debug_mode(c10::cuda::SyncDebugMode::L_ERROR);
    EXPECT_NO_THROW({
      gpu.train_step();
      gpu.train_step();
    });
    warnings.set_sync_debug_mode(c10::cuda::SyncDebugMode::L_DISABLED);
    EXPECT_TRUE(std::isfinite(gpu.train_step().loss.item<double>()));
  }
}
#endif

}  // namespace
}  // namespace demix
