#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace demix {
struct Config;
}

namespace demix::model {

// The model's shape, resolved from a Config (or built by hand in tests).
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
  bool block_experts = false;          // expert_scope=block: an expert is a whole block
  int64_t n_domain_tokens = 0;         // > 0: +DOMAIN-TOKEN, one learned token per domain
  int64_t lora_rank = 0;               // > 0: LoRA adapters on every projection
  double lora_alpha = 16;
  // MoDE: the backbone's layers split into `mode_blocks` blocks, each with `mode_experts` expert
  // stacks of `mode_layers_per_expert` layers beside it.
  int64_t mode_blocks = 0;
  int64_t mode_experts = 0;
  int64_t mode_layers_per_expert = 1;
  double init_std = 0.02;

  static GptConfig from(const Config& config);
  bool is_demix_layer(int64_t layer) const;
  std::vector<int64_t> hosted_experts() const;
  // The weights a model of this shape holds at least (embeddings, attention and FF matrices of
  // the hosted experts; no biases, norms or adapters): to refuse a model too large for the memory
  // before it is built.
  int64_t parameters_at_least() const;
  std::string describe_size() const;  // "d_model=128, n_layer=4, d_ff=512, 8 experts"
  double lora_scale() const { return lora_rank > 0 ? lora_alpha / double(lora_rank) : 0.0; }
};

}  // namespace demix::model
