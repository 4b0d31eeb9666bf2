#include "demix/checkpoint/checkpoint.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>

#include "demix/checkpoint/layout.h"
#include "demix/core/error.h"
#include "demix/core/file.h"
#include "demix/core/json.h"
#include "demix/core/manifest.h"
#include "demix/core/strings.h"
#include "demix/ops/execution_policy.h"
#include "demix/optim/optimizer.h"

namespace demix::checkpoint {
namespace fs = std::filesystem;

namespace {
constexpr int kFormat = 2;  // 2: manifest.json

// Experts are ordered as data.domains; a dense model has none.
std::vector<std::string> expert_domains(const Config& config) {
  return config.n_experts() > 0 ? config.data.domains : std::vector<std::string>{};
}
// The checkpoint directories under `root` that were renamed into place, oldest first (names
// sort by step).
std::vector<fs::path> complete_checkpoints(const fs::path& root) {
  std::vector<fs::path> complete;
  for (const auto& entry : fs::directory_iterator(root))
    if (entry.is_directory() && entry.path().extension() != layout::kIncomplete)
      complete.push_back(entry.path());
  std::sort(complete.begin(), complete.end());
  return complete;
}

// Keeps the newest `keep` complete checkpoints under `root`.
void remove_old_checkpoints(const fs::path& root, int64_t keep) {
  const auto complete = complete_checkpoints(root);
  for (size_t i = 0; i + size_t(keep) < complete.size(); ++i) fs::remove_all(complete[i]);
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
void write_owned(const fs::path& dir, const TensorDict& tensors, const Config& config,
                 const parallel::Placement& placement, int rank) {
  const auto domains = expert_domains(config);
  const auto [shared, experts] = split_by_owner(tensors);
  if (rank == 0)
    save_safetensors((dir / layout::kShared).string(), shared, shared_file_metadata(config));
  for (const auto& [id, expert] : experts) {
    const auto& domain = domains.at(size_t(id));
    if (placement.leader_of(int(id)) == rank)
      save_safetensors((dir / layout::expert_file(domain)).string(), expert,
                       expert_file_metadata(domain));
  }
}

// Where a parameter (or optimizer tensor) lives in a checkpoint: shared.safetensors, or the file
// of its expert's domain (the model's expert i is `domains[i]`) under its stripped name.
struct Location {
  std::string file;    // relative to the checkpoint
  std::string key;     // name inside the file
  std::string domain;  // "" for shared.safetensors
};

Location locate(const std::string& checkpoint, bool optimizer, const std::string& name,
                const std::vector<std::string>& domains) {
  auto file = [&](const std::string& f) { return optimizer ? layout::optimizer_file(f) : f; };
  const auto e = model::expert_of(name);
  if (!e) return {file(layout::kShared), name, ""};
  if (size_t(*e) >= domains.size())
    throw Error(checkpoint + ": the model's expert " + std::to_string(*e) + " (" + name +
                ") has no domain among its " + std::to_string(domains.size()) + " experts");
  const auto& domain = domains[size_t(*e)];
  return {file(layout::expert_file(domain)), model::strip_expert(name), domain};
}

// Fills every tensor of `targets` from the files (the optimizer's with `optimizer`) that hold them,
// each checked against the manifest (and an expert file against the domain recorded in it) before
// it is read. Strict: a tensor of a file read must be a target or one of `skipped` (deliberately
// not loaded), and every target must be found with its shape.
void read_owned(const fs::path& checkpoint, bool optimizer,
                const std::map<std::string, at::Tensor*>& targets,
                const std::vector<std::string>& skipped, const std::vector<std::string>& domains) {
  at::NoGradGuard no_grad;
  const auto where = checkpoint.string();
  const Manifest manifest(where);
  std::map<std::string, std::map<std::string, std::string>> files;  // file -> key -> name
  std::map<std::string, std::string> file_domains;                  // files to read
  for (const auto& [name, target] : targets) {
    const auto at = locate(where, optimizer, name, domains);
    files[at.file][at.key] = name;
    file_domains[at.file] = at.domain;
  }
  for (const auto& name : skipped) {
    if (const auto e = model::expert_of(name); e && size_t(*e) >= domains.size()) continue;
    const auto at = locate(where, optimizer, name, domains);
    files[at.file][at.key] = name;
  }
  for (const auto& [relative, domain] : file_domains) {
    const auto file = (checkpoint / relative).string();
    manifest.verify(relative);
    if (!domain.empty()) check_expert_domain(file, domain);
    const auto tensors = load_safetensors(file);
    const auto& names = files[relative];
    for (const auto& [key, tensor] : tensors)
      if (!names.count(key))
        throw Error(file + ": tensor '" + key +
                    "' has no place in the model (a model of another architecture than " + where +
                    "/config.yaml describes)");
    for (const auto& [key, name] : names) {
      const auto target = targets.find(name);
      if (target == targets.end()) continue;  // skipped on purpose
      const auto it = tensors.find(key);
      if (it == tensors.end()) throw Error(file + ": missing tensor '" + key + "'");
      if (!it->second.sizes().equals(target->second->sizes()))
        throw Error(file + ": tensor '" + key + "' has shape " + c10::str(it->second.sizes()) +
                    ", the model expects " + c10::str(target->second->sizes()));
      target->second->copy_(it->second);
    }
  }
}

std::string join(const std::vector<std::string>& items) { return "[" + comma_list(items) + "]"; }

// The model's experts are the checkpoint's, by name, and as many.
void check_experts(const std::string& checkpoint, const Config& saved,
                   const std::vector<std::string>& domains, const model::GptConfig& gpt) {
  auto sorted = [](std::vector<std::string> v) {
    std::sort(v.begin(), v.end());
    return v;
  };
  const auto experts = expert_domains(saved);
  const bool same_count = size_t(gpt.n_experts) == domains.size();
  if (size_t(gpt.n_experts) != experts.size() || sorted(domains) != sorted(experts))
    throw Error(checkpoint + ": its experts " + join(experts) + " are not the model's " +
                (same_count ? join(domains) : std::to_string(gpt.n_experts) + " experts"));
}

// Architecture keys that change the computation without changing any tensor's shape, and the
// depth (whose difference would otherwise show as tensors without a place).
void check_architecture(const std::string& checkpoint, const Config& saved,
                        const model::GptConfig& gpt, bool whole_model) {
  auto differ = [&](const std::string& key, const std::string& theirs, const std::string& ours) {
    if (theirs != ours)
      throw Error(checkpoint + ": " + key + "=" + theirs + " in its config.yaml, the model has " +
                  key + "=" + ours);
  };
  differ("model.n_head", std::to_string(saved.model.n_head), std::to_string(gpt.n_head));
  differ("model.n_layer", std::to_string(saved.model.n_layer), std::to_string(gpt.n_layer));
  if (whole_model && gpt.lora_rank > 0)
    differ("model.lora_alpha", c10::str(saved.model.lora_alpha), c10::str(gpt.lora_alpha));
}

void load_model_as(const std::string& checkpoint, model::GptImpl& model,
                   const std::function<bool(const std::string&)>& only, const Config* run) {
  const auto saved = checkpoint_config(checkpoint);
  const auto& gpt = model.config();
  const auto domains = run ? expert_domains(*run) : expert_domains(saved);
  check_architecture(checkpoint, saved, gpt, !only);
  if (!only) check_experts(checkpoint, saved, domains, gpt);
  if (run && (gpt.n_domain_tokens > 0 || gpt.mode_experts > 0) &&
      run->data.domains != saved.data.domains)
    throw Error(checkpoint + ": data.domains=" + join(run->data.domains) +
                " orders the domains unlike the checkpoint's " + join(saved.data.domains) +
                ", and its +DOMAIN-TOKEN or MoDE tensors keep that order: use the checkpoint's");
  std::map<std::string, at::Tensor*> targets;
  std::vector<std::string> skipped;
  auto params = model.named_parameters();
  for (auto& item : params) {
    if (!only || only(item.key()))
      targets[item.key()] = &item.value();
    else
      skipped.push_back(item.key());
  }
  read_owned(fs::path(checkpoint), false, targets, skipped, domains);
}

void load_optimizer_as(const std::string& checkpoint, optim::AdamW& optimizer,
                       const std::vector<std::string>& domains) {
  auto state = optimizer.state();  // tensors share storage with the optimizer's own
  std::map<std::string, at::Tensor*> targets;
  for (auto& [name, t] : state) targets[name] = &t;
  read_owned(fs::path(checkpoint), true, targets, {}, domains);
}

}  // namespace

std::map<std::string, std::string> expert_file_metadata(const std::string& domain) {
  return {{"domain", domain}};
}

std::map<std::string, std::string> shared_file_metadata(const Config& config) {
  if (!config.is_mode() && !config.model.domain_token) return {};
  return {{"domains", comma_list(config.data.domains)}};
}

void check_recorded_domains(const std::string& file, const std::string& key,
                            const std::string& expected) {
  const auto metadata = safetensors_metadata(file);
  const auto recorded = metadata.find(key);
  if (recorded != metadata.end() && recorded->second != expected)
    throw Error(file + ": holds the " + (key == "domain" ? "expert" : "tensors") + " of domain '" +
                recorded->second + "' (recorded in the file), not of '" + expected + "'");
}

void check_expert_domain(const std::string& file, const std::string& domain) {
  check_recorded_domains(file, "domain", domain);
}

void seal_checkpoint(const std::string& checkpoint, const Config& config, TrainState state) {
  Json meta = {{"format", kFormat},
               {"step", state.step},
               {"data_cursor", state.data_cursor},
               {"experts", expert_domains(config)},
               {"tokenizer", config.tokenizer.model}};
  // How the process that wrote it ran the model; none for an expert command, which runs none.
  if (const auto& policy = ops::execution_policy(); policy.threads > 0)
    meta["execution"] = {{"cpu_gemm", ops::to_string(policy.cpu_gemm)},
                         {"fused_cuda_kernels", policy.fused_cuda_kernels},
                         {"threads", policy.threads}};
  write_json_file((fs::path(checkpoint) / layout::kMeta).string(), meta);
  write_file_atomic((fs::path(checkpoint) / layout::kConfig).string(), to_yaml(config));
  write_manifest(checkpoint);
}

std::string save_checkpoint(const std::string& run_dir, model::GptImpl& model,
                            const optim::AdamW* optimizer, const Config& config, TrainState state,
                            int64_t keep, parallel::ProcessGroups* groups,
                            const std::function<void()>& after_model_files) {
  const fs::path root = layout::checkpoints(run_dir);
  const fs::path final_dir = root / layout::step_directory(state.step);
  const fs::path tmp = root / (layout::step_directory(state.step) + layout::kIncomplete);
  const int rank = groups ? groups->rank() : 0;
  const auto domains = expert_domains(config);
  const auto placement = groups ? groups->placement() : parallel::Placement(1, int(domains.size()));
  auto barrier = [&] {
    if (groups) groups->barrier();
  };
  if (rank == 0) {
    fs::remove_all(tmp);
    fs::create_directories(tmp / layout::kExperts);
    fs::create_directories(tmp / layout::kOptimizer / layout::kExperts);
  }
  barrier();  // every rank writes only once the directory exists

  TensorDict params;
  for (const auto& item : model.named_parameters()) params[item.key()] = item.value();
  write_owned(tmp, params, config, placement, rank);
  if (after_model_files) after_model_files();
  if (optimizer) write_owned(tmp / layout::kOptimizer, optimizer->state(), config, placement, rank);
  barrier();  // all files are complete

  if (rank == 0) {
    // Each file is fsynced with its directory (meta.json's: the subdirectories' entries too).
    seal_checkpoint(tmp.string(), config, state);
    fs::remove_all(final_dir);
    fs::rename(tmp, final_dir);
    sync_directory(final_dir.string());
    sync_directory(root.string());  // the rename
    write_file_atomic((root / layout::kLatest).string(), layout::step_directory(state.step) + "\n");
    // Older checkpoints go only now that the new one and `latest` are durable.
    remove_old_checkpoints(root, keep);
  }
  barrier();  // nobody reads `latest` before it is there
  return final_dir.string();
}

void check_run_dir(const std::string& run_dir, uintmax_t checkpoint_bytes, int rank) {
  std::error_code error;
  fs::path created;  // the outermost directory this call creates ("" if run_dir exists)
  for (auto p = fs::absolute(run_dir, error); !error && !fs::exists(p) && p != p.parent_path();
       p = p.parent_path())
    created = p;
  // Writability first: a directory that cannot be made or written has no meaningful free space.
  fs::create_directories(run_dir, error);
  if (error) throw Error("train.out_dir=" + run_dir + ": cannot be created: " + error.message());
  const auto probe = fs::path(run_dir) / (".write_test." + std::to_string(rank));
  {
    std::ofstream out(probe);
    if (!(out << "demix\n") || !out.flush())
      throw Error("train.out_dir=" + run_dir + ": not writable");
  }
  fs::remove(probe);
  const auto space = fs::space(run_dir, error);
  if (!error && space.available < checkpoint_bytes) {
    if (!created.empty()) fs::remove_all(created, error);  // refused: leave nothing behind
    throw Error("train.out_dir=" + run_dir + ": " + std::to_string(space.available >> 20) +
                " MiB free, a checkpoint needs " + std::to_string(checkpoint_bytes >> 20) + " MiB");
  }
}

std::string resolve_checkpoint(const std::string& path) {
  const fs::path p(path);
  auto checked = [](const fs::path& dir) {
    Manifest(dir.string()).check_sizes();  // tensor files are checksummed when they are read
    checkpoint_config(dir.string());       // the small files in full: checksums, values
    checkpoint_state(dir.string());
    return dir.string();
  };
  if (fs::exists(p / layout::kMeta)) return checked(p);
  for (const fs::path& root : {p, layout::checkpoints(p)}) {
    std::ifstream latest(root / layout::kLatest);
    std::string name;
    if (latest >> name && fs::exists(root / name / layout::kMeta)) return checked(root / name);
  }
  throw Error(path + ": not a checkpoint or a run directory with checkpoints/latest");
}

std::string latest_valid_checkpoint(const std::string& run_dir) {
  const fs::path root = layout::checkpoints(run_dir);
  if (!fs::exists(root)) return "";
  const auto complete = complete_checkpoints(root);
  for (auto newest = complete.rbegin(); newest != complete.rend(); ++newest) {
    const auto dir = newest->string();
    try {
      Manifest(dir).verify_all();
      checkpoint_state(dir);
      return dir;
    } catch (const Error& e) {
      spdlog::warn("skipping checkpoint {}: {}", dir, e.what());
    }
  }
  return "";
}

Config checkpoint_config(const std::string& checkpoint) {
  Manifest(checkpoint).verify(layout::kConfig);
  return load_config((fs::path(checkpoint) / layout::kConfig).string());
}

TrainState checkpoint_state(const std::string& checkpoint) {
  Manifest(checkpoint).verify(layout::kMeta);
  const auto path = (fs::path(checkpoint) / layout::kMeta).string();
  const auto meta = read_json_file(path, "checkpoint metadata");
  try {
    if (meta.at("format") != kFormat)
      throw Error(path + ": checkpoint format " + meta.at("format").dump() + ", expected " +
                  std::to_string(kFormat));
    for (const char* key : {"step", "data_cursor"})
      if (!meta.at(key).is_number_unsigned())
        throw Error(path + ": " + key + "=" + meta.at(key).dump() + ", expected a count >= 0");
    return {meta.at("step").get<int64_t>(), meta.at("data_cursor").get<uint64_t>()};
  } catch (const nlohmann::json::exception& e) {
    throw Error(path + ": unreadable checkpoint metadata: " + json_message(e));
  }
}

void load_model(const std::string& checkpoint, model::GptImpl& model,
                const std::function<bool(const std::string&)>& only) {
  load_model_as(checkpoint, model, only, nullptr);
}

void load_model(const std::string& checkpoint, model::GptImpl& model, const Config& run) {
  load_model_as(checkpoint, model, {}, &run);
}

void load_optimizer(const std::string& checkpoint, optim::AdamW& optimizer) {
  load_optimizer_as(checkpoint, optimizer, expert_domains(checkpoint_config(checkpoint)));
}

void load_optimizer(const std::string& checkpoint, optim::AdamW& optimizer, const Config& run) {
  load_optimizer_as(checkpoint, optimizer, expert_domains(run));
}

}  // namespace demix::checkpoint
