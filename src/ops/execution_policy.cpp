#include "demix/ops/execution_policy.h"

#include <ATen/Parallel.h>
#include <sched.h>
#include <spdlog/spdlog.h>

#include <climits>
#include <cstdlib>
#include <stdexcept>
#include <thread>

#include "demix/core/config.h"
#include "demix/core/error.h"

namespace demix::ops {
namespace {

// Written only by apply_execution_policy and ScopedExecutionPolicy, before or between the runs of
// the model that read it (never while an op runs). threads = 0: no policy applied yet.
ExecutionPolicy current;

bool same(const ExecutionPolicy& a, const ExecutionPolicy& b) {
  return a.cpu_gemm == b.cpu_gemm && a.fused_cuda_kernels == b.fused_cuda_kernels &&
         a.threads == b.threads;
}

int local_ranks_from_environment() {  // LOCAL_WORLD_SIZE, set by torchrun and `demix launch`
  const char* value = std::getenv("LOCAL_WORLD_SIZE");
  if (value == nullptr) return 1;
  char* end = nullptr;
  const long parsed = std::strtol(value, &end, 10);
  if (end == value || *end != '\0' || parsed < 1 || parsed > INT_MAX)
    throw Error(std::string("LOCAL_WORLD_SIZE=") + value + ": expected an integer >= 1");
  return int(parsed);
}

int available_cores() {  // the cores this process may run on (its affinity mask)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return CPU_COUNT(&set);
  return int(std::max(1u, std::thread::hardware_concurrency()));
}

}  // namespace

int resolve_threads(int64_t configured, int cores, int local_ranks) {
  if (configured > 0) return int(configured);
  return std::max(1, std::max(cores, 1) / std::max(local_ranks, 1));
}

std::string ExecutionPolicy::describe() const {
  return std::string("cpu_gemm=") + to_string(cpu_gemm) +
         " fused_cuda_kernels=" + (fused_cuda_kernels ? "on" : "off") +
         " threads=" + std::to_string(threads);
}

ExecutionPolicy apply_execution_policy(const TrainConfig& train) {
  ExecutionPolicy policy;
  try {
    policy.cpu_gemm = resolve_cpu_gemm(train.cpu_gemm);
  } catch (const std::invalid_argument& e) {
    throw Error(e.what());
  }
  policy.fused_cuda_kernels = train.fused_cuda_kernels;
  const int local_ranks = local_ranks_from_environment();
  // One process alone keeps ATen's default (OMP_NUM_THREADS or every core); ranks sharing a
  // machine split its cores, or each would run a thread on every core and they would thrash.
  if (train.threads > 0 || local_ranks > 1) {
    const int cores = available_cores();
    const int threads = resolve_threads(train.threads, cores, local_ranks);
    at::set_num_threads(threads);
    if (train.threads > 0)
      spdlog::info("CPU threads: {} (train.threads)", threads);
    else
      spdlog::info("CPU threads: {} per rank ({} cores / {} local ranks; train.threads overrides)",
                   threads, cores, local_ranks);
  }
  policy.threads = at::get_num_threads();
  // Ranks run as threads of one test process apply the same policy while others already run
  // ops: an equal policy is not written again.
  if (!same(current, policy)) current = policy;
  return policy;
}

const ExecutionPolicy& execution_policy() { return current; }

ScopedExecutionPolicy::ScopedExecutionPolicy(const ExecutionPolicy& policy) : before_(current) {
  current = policy;
}

ScopedExecutionPolicy::~ScopedExecutionPolicy() { current = before_; }

}  // namespace demix::ops
