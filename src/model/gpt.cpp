#include "demix/model/gpt.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>

#include "demix/core/config.h"
#include "demix/core/hash.h"

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
  c.n_domain_tokens = config.model.domain_token ? int64_t(config.data.domains.size()) : 0;
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
  std::vector<int64_t> all(n_experts);
  for (int64_t e = 0; e < n_experts; ++e) all[e] = e;
  return all;
}

BlockImpl::BlockImpl(const GptConfig& c, bool demix)
    : ln_1(register_module("ln_1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.d_model})))),
      ln_2(register_module("ln_2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.d_model})))),
      attn(register_module("attn", CausalSelfAttention(c.d_model, c.n_head))) {
  if (demix)
    demix_ff = register_module("ff", DemixLayer(c.d_model, c.d_ff, c.hosted_experts()));
  else
    dense_ff = register_module("ff", Mlp(c.d_model, c.d_ff));
}

torch::Tensor BlockImpl::forward(const torch::Tensor& x, const Routing& routing, KvCache* cache,
                                 int64_t layer) {
  auto h = x + (cache ? attn->forward(ln_1(x), &cache->layers[size_t(layer)], cache->length,
                                      cache->capacity)
                      : attn(ln_1(x)));
  auto normed = ln_2(h);
  return h + (demix_ff ? demix_ff->forward(normed, routing) : dense_ff->forward(normed));
}

GptImpl::GptImpl(GptConfig config, uint64_t seed) : config_(std::move(config)) {
  const auto& c = config_;
  const int64_t positions = context_length();
  wte = register_module("wte", torch::nn::Embedding(c.vocab_size, c.d_model));
  wpe = register_module("wpe", torch::nn::Embedding(positions, c.d_model));
  if (c.n_domain_tokens > 0)
    domain_tokens =
        register_module("domain_tokens", torch::nn::Embedding(c.n_domain_tokens, c.d_model));
  blocks = register_module("blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.n_layer; ++i) blocks->push_back(Block(c, c.is_demix_layer(i)));
  ln_f = register_module("ln_f", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.d_model})));
  init_weights(seed);
}

void GptImpl::init_weights(uint64_t seed) {
  torch::NoGradGuard no_grad;
  // GPT-2: N(0, 0.02) weights, residual output projections scaled by 1/sqrt(2 * n_layer).
  const double residual_std = config_.init_std / std::sqrt(2.0 * config_.n_layer);
  auto ends_with = [](const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() &&
           s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  for (auto& item : named_parameters()) {
    const auto& name = item.key();
    auto& p = item.value();
    const bool is_norm = name.find("ln_") != std::string::npos;
    if (ends_with(name, ".bias")) {
      p.zero_();
    } else if (is_norm) {
      p.fill_(1.0);
    } else {
      const bool residual = ends_with(name, "proj.weight") || ends_with(name, "fc2.weight");
      auto gen = at::make_generator<at::CPUGeneratorImpl>(hash_string(seed, strip_expert(name)) ^
                                                          mix64(expert_of(name).value_or(-1)));
      auto values = torch::empty(p.sizes(), torch::kFloat32);
      values.normal_(0.0, residual ? residual_std : config_.init_std, gen);
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
  if (cache && cache->layers.empty()) cache->layers.resize(size_t(config_.n_layer));
  for (int64_t i = 0; i < config_.n_layer; ++i)
    x = blocks[size_t(i)]->as<Block>()->forward(x, routing, cache, i);
  if (cache) cache->length += x.size(1);
  x = ln_f(x);
  return prepend ? x.narrow(1, 1, T) : x;  // the domain token predicts nothing
}

torch::Tensor GptImpl::forward(const torch::Tensor& tokens, const Routing& routing) {
  return torch::matmul(hidden(tokens, routing, nullptr), wte->weight.t());  // tied: (B, T, V)
}

torch::Tensor GptImpl::forward(const torch::Tensor& tokens, const Routing& routing,
                               KvCache& cache) {
  return torch::matmul(hidden(tokens, routing, &cache), wte->weight.t());
}

torch::Tensor GptImpl::loss(const torch::Tensor& tokens, const torch::Tensor& targets,
                            const Routing& routing) {
  auto logits = forward(tokens, routing);
  return at::cross_entropy_loss(logits.view({-1, logits.size(-1)}), targets.reshape({-1}));
}

torch::Tensor GptImpl::token_logprobs(const torch::Tensor& tokens, const torch::Tensor& targets,
                                      const Routing& routing) {
  auto logits = forward(tokens, routing).to(torch::kFloat32);
  auto nll = at::cross_entropy_loss(logits.view({-1, logits.size(-1)}), targets.reshape({-1}),
                                    /*weight=*/{}, at::Reduction::None);
  return -nll.view(targets.sizes());
}

int64_t GptImpl::num_params(bool include_experts) const {
  int64_t n = 0;
  for (const auto& item : named_parameters())
    if (include_experts || !expert_of(item.key())) n += item.value().numel();
  return n;
}

namespace {
const std::string kExperts = ".experts.";
}

std::optional<int64_t> expert_of(const std::string& name) {
  const auto at = name.find(kExperts);
  if (at == std::string::npos) return std::nullopt;
  return std::stoll(name.substr(at + kExperts.size()));
}

std::string strip_expert(const std::string& name) {
  const auto at = name.find(kExperts);
  if (at == std::string::npos) return name;
  const auto end = name.find('.', at + kExperts.size());
  return name.substr(0, at) + name.substr(end);
}

std::string with_expert(const std::string& stripped, int64_t id) {
  // The expert's own modules start right after "ff": blocks.3.ff.fc1.weight.
  const auto at = stripped.find(".ff.");
  TORCH_CHECK(at != std::string::npos, "not an expert parameter name: ", stripped);
  return stripped.substr(0, at + 3) + kExperts + std::to_string(id) + stripped.substr(at + 3);
}

}  // namespace demix::model
