#pragma once

// How one rank's gradients become the step's: the Trainer's one strategy for it, chosen once
// from the launch and the config (make_step_sync).
//   one process        its gradients are the step's.
//   expert-parallel    the ranks of a launch: parallel::GradSync all-reduces the shared buckets
//                      over all ranks and each expert's inside its group, overlapped with backward.
//   MoDE branches      mode.placement=branches: rank 0 runs the backbone layers, rank j + 1 expert
//                      stack j, and the forward exchanges their outputs (parallel/
//                      branch_exchange.h); each rank then holds its own branch's gradients.

#include <ATen/core/Tensor.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "demix/core/config.h"
#include "demix/model/gpt.h"
#include "demix/optim/optimizer.h"
#include "demix/parallel/grad_sync.h"
#include "demix/parallel/process_groups.h"

namespace demix::train {

class StepSync {
 public:
  virtual ~StepSync() = default;
  // Before the backward of step `step`'s last micro-batch.
  virtual void before_last_backward(int64_t /*step*/) {}
  // After that backward: completes the gradients and returns their global L2 norm, a 0-dim
  // tensor equal on every rank (no host sync).
  virtual at::Tensor finish() = 0;
  // Before one rank reads the whole model (validation, a checkpoint): MoDE branches broadcast
  // each expert stack's parameters and AdamW state from the rank that trains it.
  virtual void gather_model(model::GptImpl& /*model*/, const optim::AdamW& /*optimizer*/) {}
  // MoDE branches: off while rank 0 runs the whole model alone (validation), then on again.
  virtual void exchange(model::GptImpl& /*model*/, bool /*on*/) {}
  // The expert-parallel all-reduce, for its metrics; nullptr otherwise.
  virtual const parallel::GradSync* grad_sync() const { return nullptr; }
};

// `trainable`: the parameters the optimizer updates, by name. `groups`: nullptr in one process.
std::unique_ptr<StepSync> make_step_sync(
    const Config& config, model::GptImpl& model,
    const std::vector<std::pair<std::string, at::Tensor>>& trainable,
    parallel::ProcessGroups* groups, const std::vector<int>& untrained_experts);

// MoDE placement branches under a launch: every rank computes the same batch.
bool branch_parallel(const Config& config, const parallel::ProcessGroups* groups);

}  // namespace demix::train
