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

#include "demix/model/attention.h"
#include "demix/model/demix_layer.h"
#include "demix/model/mlp.h"
#include "demix/model/routing.h"

namespace demix {
struct Config;
}

namespace demix::model {

struct GptConfig {
  int64_t vocab_size = 0;
  int64_t block_size = 0;  // tokens per sequence, not counting a domain token
  int64_t d_model = 0;
  int64_t n_layer = 0;
  int64_t n_head = 0;
  int64_t d_ff = 0;
  int64_t n_experts = 0;               // 0: every FF is dense
  std::vector<int64_t> demix_layers;   // empty: every layer (when n_experts > 0)
  std::vector<int64_t> local_experts;  // experts materialised here; empty: all of them
  int64_t n_domain_tokens = 0;         // > 0: +DOMAIN-TOKEN, one learned token per domain
  double init_std = 0.02;

  static GptConfig from(const Config& config);
  bool is_demix_layer(int64_t layer) const;
  std::vector<int64_t> hosted_experts() const;
};

struct BlockImpl : torch::nn::Module {
  BlockImpl(const GptConfig& config, bool demix);
  torch::Tensor forward(const torch::Tensor& x, const Routing& routing,  // (B, T, C)
                        KvCache* cache = nullptr, int64_t layer = 0);

  torch::nn::LayerNorm ln_1{nullptr}, ln_2{nullptr};
  CausalSelfAttention attn{nullptr};
  Mlp dense_ff{nullptr};         // registered as "ff" in a dense block
  DemixLayer demix_ff{nullptr};  // registered as "ff" in a DEMix block
};
TORCH_MODULE(Block);

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
  torch::Tensor token_logprobs(const torch::Tensor& tokens, const torch::Tensor& targets,
                               const Routing& routing);

  // Deterministic per-parameter initialisation: each tensor draws from a generator seeded by
  // (seed, its name), so a parameter starts the same whichever experts this process hosts.
  void init_weights(uint64_t seed);

  const GptConfig& config() const { return config_; }
  int64_t num_params(bool include_experts = true) const;

  torch::nn::Embedding wte{nullptr}, wpe{nullptr}, domain_tokens{nullptr};
  torch::nn::ModuleList blocks{nullptr};
  torch::nn::LayerNorm ln_f{nullptr};

 private:
  torch::Tensor hidden(const torch::Tensor& tokens, const Routing& routing,  // (B, T, C)
                       KvCache* cache);
  GptConfig config_;
};
TORCH_MODULE(Gpt);

// Parameter names tell shared from expert parameters: `blocks.3.ff.experts.5.fc1.weight` belongs
// to expert 5; everything else (embeddings, attention, LayerNorms, dense FFs) is shared.
std::optional<int64_t> expert_of(const std::string& param_name);
// `blocks.3.ff.experts.5.fc1.weight` -> `blocks.3.ff.fc1.weight`: the name inside an expert file.
std::string strip_expert(const std::string& param_name);
// The inverse: the model's name for an expert-file entry of expert `id`.
std::string with_expert(const std::string& stripped_name, int64_t id);

}  // namespace demix::model
