#include "demix/model/gpt.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>

#include "demix/core/config.h"
#include "demix/core/hash.h"
#include "demix/core/memory_budget.h"
#include "demix/model/demix_block.h"
#include "demix/ops/layer_norm.h"
#include "demix/ops/linear_map.h"
#include "demix/ops/target_logprobs.h"

namespace demix::model {

GptConfig GptConfig::from(const Config& config) {
  GptConfig c;
  c.vocab_size = config.model.vocab_size;
  c.block_size = config.model.seq_len;
  c.d_model = config.model.d_model;
  c.n_layer = config.model.n_layer;
  c.n_head = config.model.n_head;
  c.d_ff = config.d_ff();
  c.n_experts = config.n_experts();
  c.demix_layers = config.model.demix_layers;
  c.block_experts = config.model.expert_scope == ExpertScope::kBlock;
  c.n_domain_tokens = config.model.domain_token ? int64_t(config.data.domains.size()) : 0;
  c.lora_rank = config.model.lora_rank;
  c.lora_alpha = config.model.lora_alpha;
  c.mode_blocks = config.mode.blocks;
  c.mode_experts = config.is_mode() ? int64_t(config.data.domains.size()) : 0;
  c.mode_layers_per_expert = config.mode.layers_per_expert;
  c.init_std = config.model.init_std;
  return c;
}

bool GptConfig::is_demix_layer(int64_t layer) const {
  if (n_experts == 0) return false;
  return demix_layers.empty() ||
         std::find(demix_layers.begin(), demix_layers.end(), layer) != demix_layers.end();
}

std::vector<int64_t> GptConfig::hosted_experts() const {
  if (!local_experts.empty()) return local_experts;
  std::vector<int64_t> all(size_t(n_experts), 0);
  for (int64_t e = 0; e < n_experts; ++e) all[size_t(e)] = e;
  return all;
}

int64_t GptConfig::parameters_at_least() const {
  // Counted in double: a nonsense shape must give a large number, not an overflow.
  const double d = double(d_model), ff = 2.0 * d * double(d_ff), attention = 4.0 * d * d;
  const double experts = double(hosted_experts().size());
  double total = double(vocab_size + block_size) * d;
  for (int64_t i = 0; i < n_layer; ++i) {
    if (block_experts && is_demix_layer(i))
      total += experts * (attention + ff);
    else
      total += attention + (is_demix_layer(i) ? experts : 1.0) * ff;
  }
  return int64_t(std::min(total, 9e18));
}

std::string GptConfig::describe_size() const {
  return "model.d_model=" + std::to_string(d_model) + ", model.n_layer=" + std::to_string(n_layer) +
         ", d_ff=" + std::to_string(d_ff) + ", " + std::to_string(hosted_experts().size()) +
         " experts here";
}

GptImpl::GptImpl(GptConfig config, uint64_t seed) : config_(std::move(config)) {
  const auto& c = config_;
  // Parameters are created on the host, then moved.
  require_memory(uint64_t(c.parameters_at_least()) * sizeof(float), c10::Device(c10::kCPU),
                 c.describe_size() + ": the weights");
  const int64_t positions = context_length();
  wte = register_module("wte", torch::nn::Embedding(c.vocab_size, c.d_model));
  wpe = register_module("wpe", torch::nn::Embedding(positions, c.d_model));
  if (c.n_domain_tokens > 0)
    domain_tokens =
        register_module("domain_tokens", torch::nn::Embedding(c.n_domain_tokens, c.d_model));
  blocks = register_module("blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.n_layer; ++i) {
    if (c.block_experts && c.is_demix_layer(i))
      blocks->push_back(DemixBlock(c));
    else
      blocks->push_back(Block(c, c.is_demix_layer(i)));
  }
  if (c.mode_blocks > 0) {
    TORCH_CHECK(c.n_layer % c.mode_blocks == 0, "MoDE: blocks must divide n_layer");
    mode = register_module("mode", torch::nn::ModuleList());
    for (int64_t b = 0; b < c.mode_blocks; ++b) mode->push_back(ModeBlock(c));
  }
  ln_f = register_module("ln_f", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.d_model})));
  init_weights(seed);
}

void GptImpl::init_weights(uint64_t seed) {
  torch::NoGradGuard no_grad;
  // GPT-2: N(0, 0.02) weights, residual output projections scaled by 1/sqrt(2 * n_layer).
  const double residual_std = config_.init_std / std::sqrt(2.0 * config_.n_layer);
  for (auto& item : named_parameters()) {
    const auto& name = item.key();
    const auto role = param_role(name);
    auto& p = item.value();
    if (role.tensor == ParamRole::Tensor::kBias || role.tensor == ParamRole::Tensor::kLoraB) {
      p.zero_();  // a LoRA adapter starts as a no-op
    } else if (role.norm()) {
      p.fill_(1.0);
    } else {
      const double std = role.tensor == ParamRole::Tensor::kLoraA
                             ? 1.0 / std::sqrt(double(p.size(1)))
                         : role.residual_projection() ? residual_std
                                                      : config_.init_std;
      auto gen = at::make_generator<at::CPUGeneratorImpl>(hash_string(seed, strip_expert(name)) ^
                                                          mix64(expert_of(name).value_or(-1)));
      auto values = torch::empty(p.sizes(), torch::kFloat32);
      values.normal_(0.0, std, gen);
      p.copy_(values);
    }
  }
}

int64_t GptImpl::context_length() const {
  return config_.block_size + (config_.n_domain_tokens > 0 ? 1 : 0);
}

torch::Tensor GptImpl::hidden(const torch::Tensor& tokens, const Routing& routing, KvCache* cache) {
  const auto T = tokens.size(1);
  const int64_t past = cache ? cache->length : 0;
  auto x = wte(tokens);  // (B, T, C)
  // prepend the domain's token to a sequence's first tokens: (B, 1 + T, C)
  const bool prepend = domain_tokens && past == 0;
  if (prepend) x = torch::cat({domain_tokens(routing.domains()).unsqueeze(1), x}, 1);
  TORCH_CHECK(past + x.size(1) <= context_length(), "sequence of ", past + T,
              " tokens exceeds block_size ", config_.block_size);
  x = x + wpe->weight.narrow(0, past, x.size(1));
  const auto& c = config_;
  // MoDE expert layers' caches follow the backbone's: block b's at n_layer + b * per_block.
  const int64_t per_block = c.mode_experts * c.mode_layers_per_expert;
  if (cache && cache->layers.empty())
    cache->layers.resize(size_t(c.n_layer + c.mode_blocks * per_block));
  if (!mode) {
    x = layers(0, c.n_layer, x, routing, cache);
  } else {
    const int64_t span = c.n_layer / c.mode_blocks;
    for (int64_t b = 0; b < c.mode_blocks; ++b) {
      const auto backbone = [&](const torch::Tensor& input) {
        return layers(b * span, (b + 1) * span, input, routing, cache);
      };
      LayerKv* kv = cache ? &cache->layers[size_t(c.n_layer + b * per_block)] : nullptr;
      x = mode[size_t(b)]->as<ModeBlock>()->forward(x, backbone, exchange_, kv, past,
                                                    cache ? cache->capacity : 0);
    }
  }
  if (cache) cache->length += x.size(1);
  x = ops::layer_norm(ln_f, x);
  return prepend ? x.narrow(1, 1, T) : x;  // the domain token predicts nothing
}

torch::Tensor GptImpl::layers(int64_t begin, int64_t end, torch::Tensor x, const Routing& routing,
                              KvCache* cache) {
  const int64_t past = cache ? cache->length : 0, capacity = cache ? cache->capacity : 0;
  for (int64_t i = begin; i < end; ++i) {
    LayerKv* kv = cache ? &cache->layers[size_t(i)] : nullptr;
    const auto module = blocks[size_t(i)];
    if (auto* block = module->as<Block>())
      x = block->forward(x, routing, kv, past, capacity);
    else
      x = module->as<DemixBlock>()->forward(x, routing, kv, past, capacity);
  }
  return x;
}

void GptImpl::set_active_experts(const std::vector<int64_t>& experts) {
  TORCH_CHECK(mode, "set_active_experts: not a MoDE model");
  for (auto& block : *mode) block->as<ModeBlock>()->active = experts;
}

torch::Tensor GptImpl::forward(const torch::Tensor& tokens, const Routing& routing) {
  return ops::linear_map(hidden(tokens, routing, nullptr), wte->weight);  // tied: (B, T, V)
}

torch::Tensor GptImpl::forward(const torch::Tensor& tokens, const Routing& routing,
                               KvCache& cache) {
  return ops::linear_map(hidden(tokens, routing, &cache), wte->weight);
}

torch::Tensor GptImpl::loss(const torch::Tensor& tokens, const torch::Tensor& targets,
                            const Routing& routing) {
  auto logits = forward(tokens, routing);
  return at::cross_entropy_loss(logits.view({-1, logits.size(-1)}), targets.reshape({-1}));
}

torch::Tensor GptImpl::token_logprobs(const torch::Tensor& tokens, const torch::Tensor& targets,
                                      const Routing& routing, torch::Tensor* hits) {
  if (!at::GradMode::is_enabled()) {  // evaluation: the head in chunks of ~32 MB of logits
    const auto h = hidden(tokens, routing, nullptr);
    const int64_t rows = std::max<int64_t>(1, (int64_t(1) << 23) / wte->weight.size(0));
    auto out = ops::head_target_logprobs(h.view({-1, h.size(-1)}), wte->weight,
                                         targets.reshape({-1}), rows, hits);
    if (hits) *hits = hits->view(targets.sizes());
    return out.view(targets.sizes());
  }
  auto logits = forward(tokens, routing);  // bf16 under autocast: target_logprobs widens
  if (hits) *hits = logits.argmax(-1).eq(targets);
  return ops::target_logprobs(logits.view({-1, logits.size(-1)}), targets.reshape({-1}))
      .view(targets.sizes());
}

int64_t GptImpl::num_params(bool include_experts) const {
  int64_t n = 0;
  for (const auto& item : named_parameters())
    if (include_experts || !expert_of(item.key())) n += item.value().numel();
  return n;
}

}  // namespace demix::model
