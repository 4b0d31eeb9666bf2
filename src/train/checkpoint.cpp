#include "demix/train/checkpoint.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "demix/core/error.h"
#include "demix/core/json.h"
#include "demix/train/optimizer.h"

namespace demix::train {
namespace fs = std::filesystem;

namespace {
constexpr int kFormat = 1;

std::string step_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "step_%08lld", static_cast<long long>(step));
  return buf;
}

// Experts are ordered as data.domains; a dense model has none.
std::vector<std::string> expert_domains(const Config& config) {
  return config.n_experts() > 0 ? config.data.domains : std::vector<std::string>{};
}
}  // namespace

std::string save_checkpoint(const std::string& run_dir, model::GptImpl& model,
                            const AdamW* optimizer, const Config& config, TrainState state,
                            int64_t keep) {
  const fs::path root = fs::path(run_dir) / "checkpoints";
  const fs::path final_dir = root / step_name(state.step);
  const fs::path tmp = root / (step_name(state.step) + ".tmp");
  fs::remove_all(tmp);
  fs::create_directories(tmp / "experts");

  const auto domains = expert_domains(config);
  TensorDict shared;
  std::map<int64_t, TensorDict> experts;
  for (const auto& item : model.named_parameters()) {
    if (const auto e = model::expert_of(item.key()))
      experts[*e][model::strip_expert(item.key())] = item.value();
    else
      shared[item.key()] = item.value();
  }
  save_safetensors((tmp / "shared.safetensors").string(), shared);
  for (const auto& [id, tensors] : experts)
    save_safetensors((tmp / "experts" / (domains.at(size_t(id)) + ".safetensors")).string(),
                     tensors);
  if (optimizer) save_safetensors((tmp / "optimizer.safetensors").string(), optimizer->state());
  JsonObject meta;
  meta.add("format", kFormat)
      .add("step", state.step)
      .add("data_cursor", state.data_cursor)
      .add("experts", domains)
      .add("tokenizer", config.tokenizer.model);
  write_file_atomic((tmp / "meta.json").string(), meta.str() + "\n");
  write_file_atomic((tmp / "config.yaml").string(), to_yaml(config));

  fs::remove_all(final_dir);
  fs::rename(tmp, final_dir);
  write_file_atomic((root / "latest").string(), step_name(state.step) + "\n");

  std::vector<fs::path> complete;  // rotation: names sort by step
  for (const auto& entry : fs::directory_iterator(root))
    if (entry.is_directory() && entry.path().extension() != ".tmp")
      complete.push_back(entry.path());
  std::sort(complete.begin(), complete.end());
  for (size_t i = 0; i + size_t(keep) < complete.size(); ++i) fs::remove_all(complete[i]);
  return final_dir.string();
}

std::string resolve_checkpoint(const std::string& path) {
  const fs::path p(path);
  if (fs::exists(p / "meta.json")) return p.string();
  for (const fs::path root : {p, p / "checkpoints"}) {
    std::ifstream latest(root / "latest");
    std::string name;
    if (latest >> name && fs::exists(root / name / "meta.json")) return (root / name).string();
  }
  throw Error(path + ": not a checkpoint or a run directory with checkpoints/latest");
}

Config checkpoint_config(const std::string& checkpoint) {
  return load_config((fs::path(checkpoint) / "config.yaml").string());
}

TrainState checkpoint_state(const std::string& checkpoint) {
  const auto path = (fs::path(checkpoint) / "meta.json").string();
  try {
    const auto meta = YAML::LoadFile(path);
    if (meta["format"].as<int>() != kFormat)
      throw Error(path + ": checkpoint format " + meta["format"].as<std::string>() + ", expected " +
                  std::to_string(kFormat));
    return {meta["step"].as<int64_t>(), meta["data_cursor"].as<uint64_t>()};
  } catch (const YAML::Exception& e) {
    throw Error(path + ": unreadable checkpoint metadata: " + e.msg);
  }
}

namespace {
void copy_into(const std::string& file, const TensorDict& from, const std::string& key,
               at::Tensor& param) {
  const auto it = from.find(key);
  if (it == from.end()) throw Error(file + ": missing tensor '" + key + "'");
  if (!it->second.sizes().equals(param.sizes()))
    throw Error(file + ": tensor '" + key + "' has shape " + c10::str(it->second.sizes()) +
                ", the model expects " + c10::str(param.sizes()));
  param.copy_(it->second);
}
}  // namespace

void load_model(const std::string& checkpoint, model::GptImpl& model) {
  at::NoGradGuard no_grad;
  const fs::path dir(checkpoint);
  const auto config = checkpoint_config(checkpoint);
  const auto domains = expert_domains(config);
  const auto shared_file = (dir / "shared.safetensors").string();
  const auto shared = load_safetensors(shared_file);
  std::map<int64_t, TensorDict> experts;
  for (auto& item : model.named_parameters()) {
    const auto e = model::expert_of(item.key());
    if (!e) {
      copy_into(shared_file, shared, item.key(), item.value());
      continue;
    }
    if (size_t(*e) >= domains.size())
      throw Error(checkpoint + ": has no expert " + std::to_string(*e));
    const auto file = (dir / "experts" / (domains[size_t(*e)] + ".safetensors")).string();
    if (!experts.count(*e)) experts[*e] = load_safetensors(file);
    copy_into(file, experts[*e], model::strip_expert(item.key()), item.value());
  }
}

void load_optimizer(const std::string& checkpoint, AdamW& optimizer) {
  const auto file = (fs::path(checkpoint) / "optimizer.safetensors").string();
  try {
    optimizer.load_state(load_safetensors(file));
  } catch (const Error& e) {
    throw Error(file + ": " + e.what());
  }
}

}  // namespace demix::train
