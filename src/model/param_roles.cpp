#include "demix/model/param_roles.h"

#include <stdexcept>
#include <vector>

namespace demix::model {
namespace {

const std::string kExperts = ".experts.";
const std::string kStacks = ".stacks.";

std::vector<std::string> split(const std::string& name) {
  std::vector<std::string> parts;
  size_t begin = 0;
  for (size_t dot; (dot = name.find('.', begin)) != std::string::npos; begin = dot + 1)
    parts.push_back(name.substr(begin, dot - begin));
  parts.push_back(name.substr(begin));
  return parts;
}

int64_t index(const std::vector<std::string>& parts, size_t i, const std::string& name) {
  if (i >= parts.size() || parts[i].empty() ||
      parts[i].find_first_not_of("0123456789") != std::string::npos)
    throw std::invalid_argument("not a parameter name of the model: " + name);
  return std::stoll(parts[i]);
}

}  // namespace

ParamRole param_role(const std::string& name) {
  const auto parts = split(name);
  for (const auto& part : parts)
    if (part.empty()) throw std::invalid_argument("not a parameter name of the model: " + name);
  ParamRole role;
  size_t i = 0;
  if (parts[0] == "blocks") {
    role.block = index(parts, 1, name);
    i = 2;
  } else if (parts[0] == "mode") {
    role.mode_block = index(parts, 1, name);
    i = 2;
    if (i < parts.size() && parts[i] == "stacks") {
      role.stack = index(parts, 3, name);
      index(parts, 4, name);  // the stack's layer
      i = 5;
    }
  }
  std::vector<std::string> module;
  for (; i + 1 < parts.size(); ++i) {
    if (parts[i] == "experts") {
      role.expert = index(parts, ++i, name);
      continue;
    }
    module.push_back(parts[i]);
  }
  const auto& last = parts.back();
  const std::string lora_suffix = "_lora";
  const bool lora = !module.empty() && module.back().size() > lora_suffix.size() &&
                    module.back().compare(module.back().size() - lora_suffix.size(),
                                          lora_suffix.size(), lora_suffix) == 0;
  if (lora && (last == "a" || last == "b")) {
    role.tensor = last == "a" ? ParamRole::Tensor::kLoraA : ParamRole::Tensor::kLoraB;
    module.back().resize(module.back().size() - lora_suffix.size());
  } else if (!lora && (last == "weight" || last == "bias")) {
    role.tensor = last == "weight" ? ParamRole::Tensor::kWeight : ParamRole::Tensor::kBias;
  } else {
    throw std::invalid_argument("not a parameter name of the model: " + name);
  }
  if (module.empty()) throw std::invalid_argument("not a parameter name of the model: " + name);
  for (const auto& part : module) role.module += (role.module.empty() ? "" : ".") + part;
  return role;
}

bool is_backbone_param(const std::string& name) { return param_role(name).backbone(); }

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

std::string with_expert(const std::string& stripped, int64_t id, bool block_experts) {
  // The expert's own modules start right after "ff" (blocks.3.ff.fc1.weight) or, for a block
  // expert, after the block's index (blocks.3.attn.qkv.weight).
  const std::string blocks = "blocks.";
  auto at = std::string::npos;
  if (stripped.rfind(blocks, 0) == 0)
    at = block_experts ? stripped.find('.', blocks.size()) : stripped.find(".ff.");
  if (at == std::string::npos)
    throw std::invalid_argument("not an expert parameter name: " + stripped);
  if (!block_experts) at += 3;  // past ".ff"
  return stripped.substr(0, at) + kExperts + std::to_string(id) + stripped.substr(at);
}

std::string with_stack(const std::string& name, int64_t j) {
  const auto at = name.find(kStacks);
  const auto end = at == std::string::npos ? at : name.find('.', at + kStacks.size());
  if (end == std::string::npos) throw std::invalid_argument("not a MoDE stack parameter: " + name);
  return name.substr(0, at) + kStacks + std::to_string(j) + name.substr(end);
}

}  // namespace demix::model
