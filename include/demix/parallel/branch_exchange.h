#pragma once

// MoDE placement `branches` over c10d: rank 0 computes every block's backbone layers, rank j + 1
// expert j's stack; after each block the ranks all-gather the branch outputs and every rank
// combines them with the (replicated) gate. All ranks see the same batch, so everything after the
// gather, the loss included, is the same on every rank; in backward the gradient of each branch's
// input is summed over the ranks (an all-reduce in a tensor hook), which gives every rank the
// gradient of the whole block.

#include <torch/csrc/distributed/c10d/Backend.hpp>

#include "demix/model/mode_block.h"

namespace demix::parallel {

class C10dBranchExchange : public model::BranchExchange {
 public:
  C10dBranchExchange(c10d::Backend& world, int64_t branch) : world_(world), branch_(branch) {}
  int64_t branch() const override { return branch_; }
  torch::Tensor branch_input(const torch::Tensor& x) override;
  std::vector<torch::Tensor> gather(const torch::Tensor& mine, int64_t branches) override;

 private:
  c10d::Backend& world_;
  int64_t branch_;
};

}  // namespace demix::parallel
