#pragma once

// A DEMix layer of expert_scope=block: one whole transformer block (LayerNorms, attention and FF)
// per domain, as the DEMix code's option to untie all transformer parameters. Parameter names are
// `blocks.<i>.experts.<id>.attn.qkv.weight`: the expert's file (`experts.<id>` dropped) holds
// exactly the dense model's names for that layer, and every tool that handles experts by name
// (gradient sync, checkpoints, expert commands) treats these like FF experts.

#include <torch/nn/module.h>
#include <torch/nn/modules/container/moduledict.h>

#include "demix/model/block.h"

namespace demix::model {

struct DemixBlockImpl : torch::nn::Module {
  explicit DemixBlockImpl(const GptConfig& config);

  // Each expert's block runs once on its rows. With `kv`, the cache is kept in expert order (the
  // same routing on every call of one generation) and each expert reads and writes its rows.
  torch::Tensor forward(const torch::Tensor& x, const Routing& routing, LayerKv* kv = nullptr,
                        int64_t past = 0, int64_t capacity = 0);

  BlockImpl& expert(int64_t id);  // checks that the expert is hosted here

  torch::nn::ModuleDict experts;
};
TORCH_MODULE(DemixBlock);

}  // namespace demix::model
