#include "demix/model/mode_block.h"

#include <torch/nn/modules/container/modulelist.h>

namespace demix::model {

ModeBlockImpl::ModeBlockImpl(const GptConfig& config)
    : n_experts(config.mode_experts),
      layers_per_expert(config.mode_layers_per_expert),
      stacks(register_module("stacks", torch::nn::ModuleDict())) {
  if (n_experts > 0)
    gate = register_module("gate", torch::nn::Linear(config.d_model, n_experts + 1));
  std::vector<std::pair<std::string, std::shared_ptr<torch::nn::Module>>> hosted;
  for (int64_t id = 0; id < n_experts; ++id) {
    torch::nn::ModuleList stack;
    for (int64_t l = 0; l < layers_per_expert; ++l) stack->push_back(Block(config, false));
    hosted.emplace_back(std::to_string(id), stack.ptr());
  }
  stacks->update(hosted);
}

torch::Tensor ModeBlockImpl::run_expert(int64_t j, const torch::Tensor& x, LayerKv* kv,
                                        int64_t past, int64_t capacity) {
  const auto key = std::to_string(j);
  TORCH_CHECK(stacks->contains(key), "MoDE block: expert ", j, " is not hosted here");
  const Routing unused({}, x.device());  // expert layers are dense
  auto h = x;
  auto& stack = *stacks[key]->as<torch::nn::ModuleList>();
  for (int64_t l = 0; l < layers_per_expert; ++l)
    h = stack[size_t(l)]->as<Block>()->forward(
        h, unused, kv ? &kv[j * layers_per_expert + l] : nullptr, past, capacity);
  return h;
}

torch::Tensor ModeBlockImpl::forward(const torch::Tensor& x, const LayerStack& backbone,
                                     BranchExchange* exchange, LayerKv* kv, int64_t past,
                                     int64_t capacity) {
  std::vector<int64_t> chosen = active;
  if (chosen.empty())
    for (int64_t j = 0; j < n_experts; ++j) chosen.push_back(j);
  std::vector<torch::Tensor> outputs;
  if (exchange) {
    TORCH_CHECK(active.empty(), "MoDE: placement branches runs every expert");
    const auto input = exchange->branch_input(x);
    const auto branch = exchange->branch();
    const auto mine =
        branch == 0 ? backbone(input) : run_expert(branch - 1, input, kv, past, capacity);
    outputs = exchange->gather(mine, n_experts + 1);
  } else {
    outputs.push_back(backbone(x));
    for (auto j : chosen) outputs.push_back(run_expert(j, x, kv, past, capacity));
  }
  if (n_experts == 0) return outputs[0];
  auto logits = gate(x);  // (B, T, N + 1)
  if (!active.empty()) {  // the other experts' logits are masked: their weight is exactly 0
    std::vector<int64_t> columns = {0};
    for (auto j : chosen) columns.push_back(j + 1);
    logits = logits.index_select(-1, torch::tensor(columns, torch::kLong).to(x.device()));
  }
  const auto weights = torch::softmax(logits, -1);
  auto y = outputs[0] * weights.narrow(-1, 0, 1);
  for (size_t i = 1; i < outputs.size(); ++i)
    y = y + outputs[i] * weights.narrow(-1, int64_t(i), 1);
  return y;
}

}  // namespace demix::model
