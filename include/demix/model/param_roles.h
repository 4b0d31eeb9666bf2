#pragma once

// What a parameter is, read from its name in Gpt::named_parameters(): the one place that knows
// the naming convention. Initialisation, weight decay, trainability, checkpoint files, MoDE
// composition and export ask here instead of searching names for substrings.
//
//   wte.weight                          embedding
//   blocks.3.attn.qkv.weight            block 3, module attn.qkv
//   blocks.3.ff.experts.5.fc1.weight    block 3, expert 5, module ff.fc1 (a DEMix layer)
//   blocks.3.experts.5.ln_1.bias        block 3, expert 5, module ln_1 (a DEMix block)
//   blocks.3.attn.qkv_lora.a            block 3, module attn.qkv, LoRA factor A
//   mode.1.gate.weight                  MoDE block 1's gate
//   mode.1.stacks.2.0.ff.fc2.weight     MoDE block 1, expert stack 2, its layer 0, module ff.fc2

#include <cstdint>
#include <optional>
#include <string>

namespace demix::model {

struct ParamRole {
  enum class Tensor { kWeight, kBias, kLoraA, kLoraB };
  Tensor tensor = Tensor::kWeight;
  // The module the tensor belongs to, without block, expert, stack or LoRA parts: "wte", "ln_f",
  // "attn.qkv", "ln_1", "ff.fc1", "gate".
  std::string module;
  std::optional<int64_t> block;       // blocks.<i>
  std::optional<int64_t> expert;      // experts.<e> (a DEMix layer's or block's)
  std::optional<int64_t> mode_block;  // mode.<b>: a MoDE gate or expert stack
  std::optional<int64_t> stack;       // mode.<b>.stacks.<j>: expert j's layers

  bool embedding() const { return module == "wte" || module == "wpe" || module == "domain_tokens"; }
  bool norm() const { return module.rfind("ln_", 0) == 0; }
  bool feed_forward() const { return module.rfind("ff.", 0) == 0; }
  bool gate() const { return mode_block && !stack; }
  bool lora() const { return tensor == Tensor::kLoraA || tensor == Tensor::kLoraB; }
  // The weight of a linear layer that writes into the residual stream (GPT-2 scales its init).
  bool residual_projection() const {
    return tensor == Tensor::kWeight && (module == "attn.proj" || module == "ff.fc2");
  }
  // A parameter of the model that MoDE or LoRA is built on (not a gate, expert stack or LoRA
  // adapter): read from the backbone checkpoint and frozen.
  bool backbone() const { return !mode_block && !lora(); }
};

// Throws std::invalid_argument for a name that is not one of the model's.
ParamRole param_role(const std::string& param_name);

// param_role(name).backbone(), as a predicate for partial checkpoint loads.
bool is_backbone_param(const std::string& param_name);

// Shared or expert parameter: `blocks.3.ff.experts.5.fc1.weight` belongs to expert 5; everything
// else (embeddings, attention, LayerNorms, dense FFs) is shared. Any string is accepted.
std::optional<int64_t> expert_of(const std::string& param_name);
// `blocks.3.ff.experts.5.fc1.weight` -> `blocks.3.ff.fc1.weight`: the name inside an expert file.
std::string strip_expert(const std::string& param_name);
// The inverse: the model's name for an expert-file entry of expert `id` (an FF expert, or with
// `block_experts` a whole block: `blocks.3.attn.qkv.weight` ->
// `blocks.3.experts.5.attn.qkv.weight`).
std::string with_expert(const std::string& stripped_name, int64_t id, bool block_experts = false);
// A MoDE stack parameter moved to stack j: `mode.1.stacks.0.2.attn.qkv.weight` ->
// `mode.1.stacks.<j>.2.attn.qkv.weight`.
std::string with_stack(const std::string& param_name, int64_t j);

}  // namespace demix::model
