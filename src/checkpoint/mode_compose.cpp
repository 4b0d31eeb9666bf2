#include "demix/checkpoint/mode_compose.h"

#include <filesystem>
#include <stdexcept>

#include "demix/checkpoint/checkpoint.h"
#include "demix/checkpoint/layout.h"
#include "demix/core/config.h"
#include "demix/core/error.h"
#include "demix/core/manifest.h"
#include "demix/core/safetensors.h"

namespace demix::checkpoint {
namespace fs = std::filesystem;

void init_experts_from_backbone(model::GptImpl& model) {
  torch::NoGradGuard no_grad;
  const auto& c = model.config();
  const int64_t span = c.n_layer / c.mode_blocks, L = c.mode_layers_per_expert;
  for (int64_t b = 0; b < c.mode_blocks; ++b) {
    auto& block = *model.mode[size_t(b)]->as<model::ModeBlock>();
    for (const auto& stack : block.stacks->items())
      for (int64_t l = 0; l < L; ++l) {
        const auto source = model.blocks[size_t((b + 1) * span - L + l)]->named_parameters();
        for (auto& p : (*stack.second->as<torch::nn::ModuleList>())[size_t(l)]->named_parameters())
          p.value().copy_(source[p.key()]);
      }
  }
}

namespace {

void copy_checked(at::Tensor& target, const at::Tensor& source, const std::string& where,
                  const std::string& name) {
  if (!target.sizes().equals(source.sizes()))
    throw Error(where + ": tensor '" + name + "' has shape " + c10::str(source.sizes()) +
                ", the model expects " + c10::str(target.sizes()));
  target.copy_(source);
}

}  // namespace

void compose_experts(const Config& config, model::GptImpl& model) {
  torch::NoGradGuard no_grad;
  auto params = model.named_parameters();
  TensorDict first_backbone;
  const auto& domains = config.data.domains;
  for (size_t j = 0; j < domains.size(); ++j) {
    const auto run = (fs::path(config.mode.experts_from) / domains[j]).string();
    const auto checkpoint = checkpoint::resolve_checkpoint(run);
    const auto stage1 = checkpoint::checkpoint_config(checkpoint);
    const auto where = "mode.experts_from: " + checkpoint;
    if (!stage1.is_mode() || stage1.mode.stage != 1 ||
        stage1.data.domains != std::vector<std::string>{domains[j]})
      throw Error(where + ": expected a stage-1 MoDE run on '" + domains[j] + "' alone");
    if (stage1.mode.blocks != config.mode.blocks ||
        stage1.mode.layers_per_expert != config.mode.layers_per_expert)
      throw Error(where + ": mode.blocks / mode.layers_per_expert differ from this run's");
    const auto shared = (fs::path(checkpoint) / layout::kShared).string();
    Manifest(checkpoint).verify(layout::kShared);
    checkpoint::check_recorded_domains(shared, "domains", domains[j]);  // not another run's file
    const auto tensors = load_safetensors(shared);
    for (const auto& [name, t] : tensors) {
      model::ParamRole role;
      try {
        role = model::param_role(name);
      } catch (const std::invalid_argument& e) {
        throw Error(where + ": " + e.what());
      }
      if (role.backbone()) {
        if (j == 0) {
          first_backbone[name] = t;
        } else if (!first_backbone.count(name) || !first_backbone[name].equal(t)) {
          throw Error(where + ": its backbone tensor '" + name + "' differs from " + domains[0] +
                      "'s: the experts were trained on different backbones");
        }
        continue;
      }
      if (role.gate()) {  // (2, ...): backbone row, expert row
        auto& gate = params[name];
        if (t.size(0) != 2 || !gate.sizes().slice(1).equals(t.sizes().slice(1)))
          throw Error(where + ": gate '" + name + "' has shape " + c10::str(t.sizes()) +
                      ", expected 2 rows of the model's");
        gate[int64_t(j) + 1].copy_(t[1] - t[0]);
        gate[0].zero_();
        continue;
      }
      auto* target = params.find(model::with_stack(name, int64_t(j)));
      if (!target) throw Error(where + ": tensor '" + name + "' has no place in this model");
      copy_checked(*target, t, where, name);
    }
  }
  for (auto& item : params)
    if (model::is_backbone_param(item.key())) {
      const auto it = first_backbone.find(item.key());
      if (it == first_backbone.end())
        throw Error("mode.experts_from: the stage-1 runs have no tensor '" + item.key() + "'");
      copy_checked(item.value(), it->second, "mode.experts_from", item.key());
    }
}

}  // namespace demix::checkpoint
