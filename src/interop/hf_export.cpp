#include "demix/interop/hf_export.h"

#include <filesystem>
#include <map>

#include "demix/checkpoint/checkpoint.h"
#include "demix/checkpoint/expert_ops.h"
#include "demix/core/config.h"
#include "demix/core/error.h"
#include "demix/core/json.h"
#include "demix/core/safetensors.h"
#include "demix/data/tokenizer.h"
#include "demix/eval/mixture.h"
#include "demix/model/gpt.h"

namespace demix::interop {
namespace {
namespace fs = std::filesystem;

// Our parameter name -> GPT-2's, and whether GPT-2 stores it transposed (a Conv1D weight).
std::pair<std::string, bool> hf_name(const std::string& name) {
  static const std::map<std::string, std::string> kBlockModules = {{"ln_1", "ln_1"},
                                                                   {"ln_2", "ln_2"},
                                                                   {"attn.qkv", "attn.c_attn"},
                                                                   {"attn.proj", "attn.c_proj"},
                                                                   {"ff.fc1", "mlp.c_fc"},
                                                                   {"ff.fc2", "mlp.c_proj"}};
  const auto role = model::param_role(name);
  const bool weight = role.tensor == model::ParamRole::Tensor::kWeight;
  const auto suffix = weight ? ".weight" : ".bias";
  if (!role.block && !role.mode_block && !role.lora())  // wte, wpe, ln_f
    return {"transformer." + role.module + suffix, false};
  const auto it = kBlockModules.find(role.module);
  if (!role.block || role.lora() || it == kBlockModules.end())
    throw Error("export: no GPT-2 name for parameter " + name);
  return {"transformer.h." + std::to_string(*role.block) + "." + it->second + suffix,
          weight && !role.norm()};
}

// The weight of each expert in the exported FF layers.
std::vector<double> expert_weights(const Config& config, const HfExportOptions& options,
                                   const std::string& checkpoint) {
  const auto& domains = config.data.domains;
  const auto E = config.n_experts();
  if (E == 0) {
    if (!options.domain.empty() || !options.merge_prior.empty())
      throw Error(checkpoint +
                  ": a dense model has no experts; export it without --domain/--merge");
    return {};
  }
  if (options.domain.empty() == options.merge_prior.empty())
    throw Error(checkpoint +
                ": a DEMix model exports one expert path: give --domain X or --merge " +
                "prior.json");
  if (!options.merge_prior.empty()) return eval::read_prior(options.merge_prior, domains).probs();
  std::vector<double> weights(size_t(E), 0.0);
  weights[size_t(checkpoint::expert_index(config, checkpoint, options.domain))] = 1.0;
  return weights;
}

Json gpt2_config(const model::GptConfig& c, const data::Tokenizer& tokenizer,
                 const std::string& checkpoint, const HfExportOptions& options, int64_t step) {
  Json provenance = {{"checkpoint", checkpoint}, {"step", step}};
  if (!options.domain.empty()) provenance["domain"] = options.domain;
  if (!options.merge_prior.empty()) provenance["merge_prior"] = options.merge_prior;
  return {{"architectures", Json::array({"GPT2LMHeadModel"})},
          {"model_type", "gpt2"},
          {"vocab_size", c.vocab_size},
          {"n_positions", c.block_size},
          {"n_embd", c.d_model},
          {"n_layer", c.n_layer},
          {"n_head", c.n_head},
          {"n_inner", c.d_ff},
          {"activation_function", "gelu_new"},  // GELU, tanh approximation, as model/mlp.cpp
          {"layer_norm_epsilon", 1e-5},         // torch::nn::LayerNorm's default
          {"resid_pdrop", 0.0},
          {"embd_pdrop", 0.0},
          {"attn_pdrop", 0.0},
          {"initializer_range", c.init_std},
          {"tie_word_embeddings", true},
          // Both ids of this vocabulary: transformers' GPT-2 defaults (50256) lie outside it.
          {"bos_token_id", tokenizer.eos_id()},
          {"eos_token_id", tokenizer.eos_id()},
          {"dtype", "float32"},
          {"demix", provenance}};
}

Json tokenizer_config(const data::Tokenizer& tokenizer, int64_t max_length) {
  // sentencepiece as trained by data/tokenizer.cpp: no BOS, no dummy prefix; `legacy` keeps the
  // LlamaTokenizer from inserting one.
  return {{"tokenizer_class", "LlamaTokenizer"},
          {"add_bos_token", false},
          {"add_eos_token", false},
          {"add_prefix_space", false},
          {"legacy", true},
          {"bos_token", tokenizer.piece(tokenizer.eos_id())},
          {"eos_token", tokenizer.piece(tokenizer.eos_id())},
          {"unk_token", tokenizer.piece(tokenizer.unk_id())},
          {"model_max_length", max_length}};
}

}  // namespace

void export_hf(const std::string& path, const HfExportOptions& options, const std::string& out) {
  const auto checkpoint = checkpoint::resolve_checkpoint(path);
  const auto config = checkpoint::checkpoint_config(checkpoint);
  if (config.model.domain_token)
    throw Error(checkpoint +
                ": a +DOMAIN-TOKEN model prepends a learned domain token, which "
                "GPT-2 has no slot for; it cannot be exported");
  if (config.is_mode() || config.model.lora_rank > 0)
    throw Error(checkpoint + ": MoDE gates and expert stacks, and LoRA adapters, have no GPT-2 " +
                "equivalent; it cannot be exported");
  const auto weights = expert_weights(config, options, checkpoint);
  if (fs::exists(out)) throw Error(out + ": already exists (choose a new --out)");
  const data::Tokenizer tokenizer(config.tokenizer.model);

  const auto gpt_config = model::GptConfig::from(config);
  model::Gpt gpt(gpt_config);
  checkpoint::load_model(checkpoint, *gpt);

  TensorDict tensors;
  torch::NoGradGuard no_grad;
  for (const auto& item : gpt->named_parameters()) {
    const auto expert = model::expert_of(item.key());
    const double weight = expert ? weights[size_t(*expert)] : 1.0;
    if (weight == 0.0) continue;
    auto [name, transposed] = hf_name(item.key());
    auto value = item.value().to(torch::kFloat32);
    if (transposed) value = value.t();
    if (expert && weight != 1.0) value = value * weight;
    auto& slot = tensors[name];
    slot = slot.defined() ? slot + value : value.contiguous().clone();
  }

  const fs::path tmp = out + ".tmp";
  fs::remove_all(tmp);
  try {
    fs::create_directories(tmp);
    save_safetensors((tmp / "model.safetensors").string(), tensors, {{"format", "pt"}});
    write_json_file((tmp / "config.json").string(),
                    gpt2_config(gpt_config, tokenizer, checkpoint, options,
                                checkpoint::checkpoint_state(checkpoint).step));
    fs::copy_file(config.tokenizer.model, tmp / "tokenizer.model");
    write_json_file((tmp / "tokenizer_config.json").string(),
                    tokenizer_config(tokenizer, gpt_config.block_size));
    fs::rename(tmp, out);
  } catch (...) {
    fs::remove_all(tmp);
    throw;
  }
}

}  // namespace demix::interop
