#include "demix/train/checkpoint.h"

#include <spdlog/spdlog.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>

#include "demix/core/error.h"
#include "demix/core/json.h"
#include "demix/core/manifest.h"
#include "demix/train/optimizer.h"

namespace demix::train {
namespace fs = std::filesystem;

namespace {
constexpr int kFormat = 2;  // 2: manifest.json

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

namespace {

// Splits tensors named like model parameters (optionally behind a "kind/" prefix) into the
// shared ones and one dict per expert, with `experts.<id>` dropped from the expert names.
std::pair<TensorDict, std::map<int64_t, TensorDict>> split_by_owner(const TensorDict& tensors) {
  std::pair<TensorDict, std::map<int64_t, TensorDict>> out;
  for (const auto& [name, t] : tensors) {
    if (const auto e = model::expert_of(name))
      out.second[*e][model::strip_expert(name)] = t;
    else
      out.first[name] = t;
  }
  return out;
}

// Writes shared.safetensors (rank 0) and experts/<domain>.safetensors (each expert's leader).
void write_owned(const fs::path& dir, const TensorDict& tensors,
                 const std::vector<std::string>& domains, const dist::Placement& placement,
                 int rank) {
  const auto [shared, experts] = split_by_owner(tensors);
  if (rank == 0) save_safetensors((dir / "shared.safetensors").string(), shared);
  for (const auto& [id, expert] : experts)
    if (placement.leader_of(int(id)) == rank)
      save_safetensors((dir / "experts" / (domains.at(size_t(id)) + ".safetensors")).string(),
                       expert);
}

// Fills every tensor of `targets` from the shared and expert files under <checkpoint>/<subdir>,
// each checked against the checkpoint's manifest before it is read.
void read_owned(const fs::path& checkpoint, const std::string& subdir,
                const std::map<std::string, at::Tensor*>& targets,
                const std::vector<std::string>& domains) {
  at::NoGradGuard no_grad;
  const Manifest manifest(checkpoint.string());
  std::map<std::string, TensorDict> files;  // loaded lazily, once each
  for (const auto& [name, target] : targets) {
    const auto e = model::expert_of(name);
    if (e && size_t(*e) >= domains.size())
      throw Error(checkpoint.string() + ": the checkpoint has no expert " + std::to_string(*e));
    const auto relative =
        subdir + (e ? "experts/" + domains[size_t(*e)] + ".safetensors" : "shared.safetensors");
    const auto file = (checkpoint / relative).string();
    if (!files.count(file)) {
      manifest.verify(relative);
      files[file] = load_safetensors(file);
    }
    const auto key = e ? model::strip_expert(name) : name;
    const auto it = files[file].find(key);
    if (it == files[file].end()) throw Error(file + ": missing tensor '" + key + "'");
    if (!it->second.sizes().equals(target->sizes()))
      throw Error(file + ": tensor '" + key + "' has shape " + c10::str(it->second.sizes()) +
                  ", the model expects " + c10::str(target->sizes()));
    target->copy_(it->second);
  }
}

}  // namespace

void seal_checkpoint(const std::string& checkpoint, const Config& config, TrainState state) {
  JsonObject meta;
  meta.add("format", kFormat)
      .add("step", state.step)
      .add("data_cursor", state.data_cursor)
      .add("experts", expert_domains(config))
      .add("tokenizer", config.tokenizer.model);
  write_file_atomic((fs::path(checkpoint) / "meta.json").string(), meta.str() + "\n");
  write_file_atomic((fs::path(checkpoint) / "config.yaml").string(), to_yaml(config));
  write_manifest(checkpoint);
}

std::string save_checkpoint(const std::string& run_dir, model::GptImpl& model,
                            const AdamW* optimizer, const Config& config, TrainState state,
                            int64_t keep, dist::ProcessGroups* groups,
                            const std::function<void()>& after_model_files) {
  const fs::path root = fs::path(run_dir) / "checkpoints";
  const fs::path final_dir = root / step_name(state.step);
  const fs::path tmp = root / (step_name(state.step) + ".tmp");
  const int rank = groups ? groups->rank() : 0;
  const auto domains = expert_domains(config);
  const auto placement = groups ? groups->placement() : dist::Placement(1, int(domains.size()));
  auto barrier = [&] {
    if (groups) groups->barrier();
  };
  if (rank == 0) {
    fs::remove_all(tmp);
    fs::create_directories(tmp / "experts");
    fs::create_directories(tmp / "optimizer" / "experts");
  }
  barrier();  // every rank writes only once the directory exists

  TensorDict params;
  for (const auto& item : model.named_parameters()) params[item.key()] = item.value();
  write_owned(tmp, params, domains, placement, rank);
  if (after_model_files) after_model_files();
  if (optimizer) write_owned(tmp / "optimizer", optimizer->state(), domains, placement, rank);
  barrier();  // all files are complete

  if (rank == 0) {
    seal_checkpoint(tmp.string(), config, state);
    fs::remove_all(final_dir);
    fs::rename(tmp, final_dir);
    write_file_atomic((root / "latest").string(), step_name(state.step) + "\n");
    std::vector<fs::path> complete;  // rotation: names sort by step
    for (const auto& entry : fs::directory_iterator(root))
      if (entry.is_directory() && entry.path().extension() != ".tmp")
        complete.push_back(entry.path());
    std::sort(complete.begin(), complete.end());
    for (size_t i = 0; i + size_t(keep) < complete.size(); ++i) fs::remove_all(complete[i]);
  }
  barrier();  // nobody reads `latest` before it is there
  return final_dir.string();
}

void check_run_dir(const std::string& run_dir, uintmax_t checkpoint_bytes, int rank) {
  std::error_code error;
  auto existing = fs::absolute(run_dir, error);  // free space where the directory will be
  while (!error && !fs::exists(existing) && existing.has_parent_path() &&
         existing != existing.parent_path())
    existing = existing.parent_path();
  const auto space = fs::space(existing, error);
  if (!error && space.available < checkpoint_bytes)
    throw Error("train.out_dir=" + run_dir + ": " + std::to_string(space.available >> 20) +
                " MiB free, a checkpoint needs " + std::to_string(checkpoint_bytes >> 20) + " MiB");
  fs::create_directories(run_dir, error);
  if (error) throw Error("train.out_dir=" + run_dir + ": cannot be created: " + error.message());
  const auto probe = fs::path(run_dir) / (".write_test." + std::to_string(rank));
  {
    std::ofstream out(probe);
    if (!(out << "demix\n") || !out.flush())
      throw Error("train.out_dir=" + run_dir + ": not writable");
  }
  fs::remove(probe);
}

std::string resolve_checkpoint(const std::string& path) {
  const fs::path p(path);
  auto checked = [](const fs::path& dir) {
    Manifest(dir.string()).check_sizes();  // tensor files are checksummed when they are read
    return dir.string();
  };
  if (fs::exists(p / "meta.json")) return checked(p);
  for (const fs::path& root : {p, p / "checkpoints"}) {
    std::ifstream latest(root / "latest");
    std::string name;
    if (latest >> name && fs::exists(root / name / "meta.json")) return checked(root / name);
  }
  throw Error(path + ": not a checkpoint or a run directory with checkpoints/latest");
}

std::string latest_valid_checkpoint(const std::string& run_dir) {
  const fs::path root = fs::path(run_dir) / "checkpoints";
  if (!fs::exists(root)) return "";
  std::vector<fs::path> complete;  // newest first; names sort by step
  for (const auto& entry : fs::directory_iterator(root))
    if (entry.is_directory() && entry.path().extension() != ".tmp")
      complete.push_back(entry.path());
  std::sort(complete.rbegin(), complete.rend());
  for (const auto& dir : complete) {
    try {
      Manifest(dir.string()).verify_all();
      checkpoint_state(dir.string());
      return dir.string();
    } catch (const Error& e) {
      spdlog::warn("skipping checkpoint {}: {}", dir.string(), e.what());
    }
  }
  return "";
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

void load_model(const std::string& checkpoint, model::GptImpl& model,
                const std::function<bool(const std::string&)>& only) {
  std::map<std::string, at::Tensor*> targets;
  auto params = model.named_parameters();
  for (auto& item : params)
    if (!only || only(item.key())) targets[item.key()] = &item.value();
  read_owned(fs::path(checkpoint), "", targets, expert_domains(checkpoint_config(checkpoint)));
}

void load_optimizer(const std::string& checkpoint, AdamW& optimizer) {
  auto state = optimizer.state();  // tensors share storage with the optimizer's own
  std::map<std::string, at::Tensor*> targets;
  for (auto& [name, t] : state) targets[name] = &t;
  read_owned(fs::path(checkpoint), "optimizer/", targets,
             expert_domains(checkpoint_config(checkpoint)));
}

}  // namespace demix::train
