#pragma once

// How this process runs the model's maths: which library computes the fp32 GEMMs on a CPU,
// whether demix's fused CUDA kernels run, and how many intra-op threads. Resolved once from the
// config (`auto` becomes a library, 0 threads a count) by every command that runs a model
// (train, eval, generate, bench), and recorded in the checkpoints it writes (the training log
// shows it too); the ops read it, nothing else sets it. A test or a benchmark that compares paths
// scopes its own (ScopedExecutionPolicy).

#include <string>

#include "demix/ops/cpu/cpu_gemm.h"

namespace demix {
struct TrainConfig;
}

namespace demix::ops {

struct ExecutionPolicy {
  CpuGemm cpu_gemm = CpuGemm::kAten;
  // Training on CUDA with demix's second set of CUDA kernels: the bias gradients of bf16_linear
  // summed by column_sums_cuda.h, and a DEMix layer's experts as one autograd node
  // (expert_mlps.h) whose GELU backward also sums fc1's bias gradient. They remove ATen's
  // elementwise passes that torch.compile fuses away (the experts' cat, bias-gradient reductions,
  // GELU backward; their share of a step is in docs/performance.md). Off by default: they were
  // written and tested on a CPU-only machine and have not run on a GPU yet. The CUDA tests
  // (ctest -R Cuda) check them against ATen.
  bool fused_cuda_kernels = false;
  int threads = 0;  // intra-op threads (at::get_num_threads() once applied)

  std::string describe() const;  // "cpu_gemm=openblas fused_cuda_kernels=off threads=2"
};

// The policy that train.cpu_gemm, train.fused_cuda_kernels and train.threads give on this machine
// (threads: train.threads, else the cores of this process's affinity mask shared among
// LOCAL_WORLD_SIZE local ranks, else ATen's default), applied to this process.
// Throws Error for train.cpu_gemm=openblas where OpenBLAS does not load, or a bad value.
ExecutionPolicy apply_execution_policy(const TrainConfig& train);

// The intra-op threads of one process: `configured` (train.threads) when > 0, else the `cores`
// shared evenly among the `local_ranks` processes of this machine, at least one each.
int resolve_threads(int64_t configured, int cores, int local_ranks);

// What the ops follow: the last policy applied (ATen GEMMs, no fused kernels until then).
const ExecutionPolicy& execution_policy();

// Sets a policy for one scope and restores the previous one after.
class ScopedExecutionPolicy {
 public:
  explicit ScopedExecutionPolicy(const ExecutionPolicy& policy);
  ~ScopedExecutionPolicy();
  ScopedExecutionPolicy(const ScopedExecutionPolicy&) = delete;
  ScopedExecutionPolicy& operator=(const ScopedExecutionPolicy&) = delete;

 private:
  ExecutionPolicy before_;
};

}  // namespace demix::ops
