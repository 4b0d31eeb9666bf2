#pragma once

// A block of Modular Domain Experts (MoDE, Schafhalter et al., 2024): beside the frozen backbone
// layers of the block run N expert stacks of ordinary transformer layers. Every branch reads the
// block's input x; the block returns
//   y = a_0 * f_backbone(x) + sum_j a_j * f_expert_j(x),  [a_0 .. a_N] = softmax(gate(x)),
// one dense gate Linear(C, N + 1) per block, per token. Parameter names:
// `mode.<b>.gate.{weight,bias}` and `mode.<b>.stacks.<j>.<l>.attn.qkv.weight` (expert j, layer l).
// They are not DEMix experts (no `.experts.`): a MoDE model is data parallel like a dense one and
// its checkpoint keeps every tensor in shared.safetensors.

#include <torch/nn/module.h>
#include <torch/nn/modules/container/moduledict.h>
#include <torch/nn/modules/linear.h>

#include <functional>
#include <vector>

#include "demix/model/block.h"

namespace demix::model {

// Placement `branches`: each rank computes one branch of every block and the ranks exchange the
// branch outputs (implemented over c10d in parallel/branch_exchange.h).
class BranchExchange {
 public:
  virtual ~BranchExchange() = default;
  virtual int64_t branch() const = 0;  // the branch this rank computes: 0 backbone, j + 1 expert j
  // Identity in forward; in backward the input's gradient from this rank's branch is summed over
  // the ranks, so that each rank gets the gradient of the whole block.
  virtual torch::Tensor branch_input(const torch::Tensor& x) = 0;
  // All branches' outputs, in branch order; this rank's entry is `mine` itself (its gradient stays
  // local), the others are received copies.
  virtual std::vector<torch::Tensor> gather(const torch::Tensor& mine, int64_t branches) = 0;
};

using LayerStack = std::function<torch::Tensor(const torch::Tensor&)>;

struct ModeBlockImpl : torch::nn::Module {
  // The gate has config.mode_experts + 1 outputs, one stack per expert (every rank holds all of
  // them, placement branches included). With zero experts there is no gate: the block is its
  // backbone layers.
  explicit ModeBlockImpl(const GptConfig& config);

  // `backbone` runs the block's backbone layers. `kv` (generation): this block's expert layers'
  // caches, stack j's layer l at kv[j * layers_per_expert + l].
  torch::Tensor forward(const torch::Tensor& x, const LayerStack& backbone,
                        BranchExchange* exchange = nullptr, LayerKv* kv = nullptr, int64_t past = 0,
                        int64_t capacity = 0);

  torch::Tensor run_expert(int64_t j, const torch::Tensor& x, LayerKv* kv, int64_t past,
                           int64_t capacity);

  int64_t n_experts, layers_per_expert;
  std::vector<int64_t> active;  // experts the gate may choose; empty: all (the others are masked)
  torch::nn::Linear gate{nullptr};
  torch::nn::ModuleDict stacks;  // expert id -> its layers
};
TORCH_MODULE(ModeBlock);

}  // namespace demix::model
