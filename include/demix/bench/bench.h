#pragma once

// `demix bench`: training and evaluation throughput of one config on this machine, with model
// FLOPs utilisation against a GEMM peak measured in the same run, and the PyTorch reference of
// the same model (scripts/bench/reference.py: eager and torch.compile) on the same weights, batch
// and threads, after checking that it computes the same loss.

#include <string>

#include "demix/core/config.h"
#include "demix/ops/cpu/cpu_gemm.h"

namespace demix::bench {

struct BenchOptions {
  int64_t steps = 10;          // timed training steps (the median is reported)
  int64_t warmup = 3;          // untimed steps first
  int64_t rounds = 1;          // alternations of our timed steps and the reference's
  int64_t eval_tokens = 8192;  // tokens per evaluation measurement
  bool reference = true;       // also run the PyTorch reference
  bool compile = true;         // the reference also under torch.compile
  int64_t profile_steps = 0;   // > 0: profile this many more training steps (profile.md, trace)
  std::string out;             // report directory (bench.json, bench.md, the reference's files)
};

// Runs the benchmark, writes <out>/bench.json and <out>/bench.md, and returns the Markdown.
// Throws Error when the reference's loss differs from ours.
std::string run_bench(Config config, const BenchOptions& options);

// Median FLOP/s of an n x n x n matmul in `dtype` on `device` (the machine's attainable peak),
// through `library` on a CPU (ops/cpu/cpu_gemm.h; ATen's on any other device).
double gemm_flops_per_s(at::ScalarType dtype, const std::string& device, int64_t n = 2048,
                        ops::CpuGemm library = ops::CpuGemm::kAten);

}  // namespace demix::bench
