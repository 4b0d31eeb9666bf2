#pragma once

// GPT-2/GPT-3 style decoder with DEMix layers: token + learned position embeddings, pre-LayerNorm
// blocks (causal attention, then FF), final LayerNorm, output tied to the token embedding.
// Dimension letters: B batch rows, T tokens, C d_model, V vocabulary, E experts.

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/normalization.h>

#include <optional>
#include <string>
#include <vector>

#include "demix/model/block.h"
#include "demix/model/gpt_config.h"
#include "demix/model/mode_block.h"
#include "demix/model/param_roles.h"
#include "demix/model/routing.h"

namespace demix::model {

struct GptImpl : torch::nn::Module {
  explicit GptImpl(GptConfig config, uint64_t seed = 0);

  // tokens (B, T) int64 -> logits (B, T, V).
  torch::Tensor forward(const torch::Tensor& tokens, const Routing& routing);
  // Incremental decoding: logits (B, T, V) of `tokens` following the cache's positions (a prefix
  // into an empty cache, then one token at a time); the cache keeps their keys and values.
  torch::Tensor forward(const torch::Tensor& tokens, const Routing& routing, KvCache& cache);
  int64_t context_length() const;  // positions, counting a +DOMAIN-TOKEN model's domain token
  // Mean cross-entropy of targets (B, T) under the model.
  torch::Tensor loss(const torch::Tensor& tokens, const torch::Tensor& targets,
                     const Routing& routing);
  // log p(targets[b, t] | tokens[b, :t+1]) for every position: (B, T). With a routing that
  // replicates a batch once per expert, this gives every expert's token log-probabilities in one
  // batched forward, which the mixing evaluator needs.
  // With `hits`, also (B, T) bool: whether the most likely token is the target.
  torch::Tensor token_logprobs(const torch::Tensor& tokens, const torch::Tensor& targets,
                               const Routing& routing, torch::Tensor* hits = nullptr);

  // Deterministic per-parameter initialisation: each tensor draws from a generator seeded by
  // (seed, its name), so a parameter starts the same whichever experts this process hosts.
  void init_weights(uint64_t seed);

  const GptConfig& config() const { return config_; }
  int64_t num_params(bool include_experts = true) const;

  torch::nn::Embedding wte{nullptr}, wpe{nullptr}, domain_tokens{nullptr};
  // blocks[i]: a Block, or a DemixBlock with expert_scope=block. mode[b]: MoDE block b's gate and
  // expert stacks, around blocks [b * n_layer / mode_blocks, (b + 1) * n_layer / mode_blocks).
  torch::nn::ModuleList blocks{nullptr}, mode{nullptr};
  torch::nn::LayerNorm ln_f{nullptr};

  // MoDE: the experts every gate may choose (the others' gate logits are masked); empty: all.
  void set_active_experts(const std::vector<int64_t>& experts);
  // MoDE placement `branches`: this rank computes one branch per block (nullptr: all of them).
  void set_branch_exchange(BranchExchange* exchange) { exchange_ = exchange; }

 private:
  torch::Tensor hidden(const torch::Tensor& tokens, const Routing& routing,  // (B, T, C)
                       KvCache* cache);
  // The residual stream x through layers [begin, end).
  torch::Tensor layers(int64_t begin, int64_t end, torch::Tensor x, const Routing& routing,
                       KvCache* cache);
  GptConfig config_;
  BranchExchange* exchange_ = nullptr;
};
TORCH_MODULE(Gpt);

}  // namespace demix::model
