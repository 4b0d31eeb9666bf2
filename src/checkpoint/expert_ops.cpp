#include "demix/checkpoint/expert_ops.h"

#include <algorithm>
#include <filesystem>
#include <functional>
#include <numeric>

#include "demix/checkpoint/checkpoint.h"
#include "demix/checkpoint/layout.h"
#include "demix/core/error.h"
#include "demix/core/file.h"
#include "demix/core/hash.h"
#include "demix/core/manifest.h"
#include "demix/core/safetensors.h"
#include "demix/data/tokenizer.h"

namespace demix::checkpoint {
namespace fs = std::filesystem;

namespace {

fs::path expert_file(const fs::path& checkpoint, const std::string& domain) {
  return checkpoint / layout::expert_file(domain);
}
fs::path optimizer_file(const fs::path& checkpoint, const std::string& domain) {
  return checkpoint / layout::optimizer_file(layout::expert_file(domain));
}

Config demix_config(const std::string& checkpoint) {
  auto config = checkpoint::checkpoint_config(checkpoint);
  if (config.n_experts() == 0) throw Error(checkpoint + ": a dense model has no experts");
  return config;
}

// Copies `checkpoint` to `out`.tmp (its files checked against its manifest first, so that no
// corrupted file is sealed again), lets `edit` change it and the config, writes the metadata and
// renames it into place, creating the parent directories of `out`. On an error the temporary
// directory is removed; file system errors name the path and the problem.
void derive(const std::string& checkpoint, const std::string& out,
            const std::function<void(const fs::path& dir, Config& config)>& edit) {
  const auto source = checkpoint::resolve_checkpoint(checkpoint);
  if (fs::exists(out)) throw Error(out + ": already exists (choose a new --out)");
  Manifest(source).verify_all();
  const auto parent = fs::path(out).parent_path();
  std::error_code error;
  if (!parent.empty()) fs::create_directories(parent, error);
  if (error)
    throw Error("--out " + out + ": cannot create its directory " + parent.string() + ": " +
                error.message());
  const fs::path tmp = out + ".tmp";
  try {
    fs::remove_all(tmp);
    fs::copy(source, tmp, fs::copy_options::recursive);
    for (const auto* name : {"eval.json", "mixture"}) fs::remove_all(tmp / name);  // stale reports
    auto config = checkpoint::checkpoint_config(source);
    edit(tmp, config);
    config.validate(out);
    checkpoint::seal_checkpoint(tmp.string(), config, checkpoint::checkpoint_state(source));
    fs::rename(tmp, out);
    sync_directory(fs::absolute(out).parent_path().string());
  } catch (const fs::filesystem_error& e) {
    fs::remove_all(tmp, error);
    const auto path = e.path1().empty() ? out : e.path1().string();
    throw Error("--out " + out + ": " + path + ": " + e.code().message());
  } catch (...) {
    fs::remove_all(tmp, error);
    throw;
  }
}

// An expert's file of `checkpoint`, checked against its manifest and the domain it records.
fs::path checked_expert_file(const fs::path& checkpoint, const fs::path& file,
                             const std::string& domain) {
  Manifest(checkpoint.string()).verify(fs::relative(file, checkpoint).generic_string());
  checkpoint::check_expert_domain(file.string(), domain);
  return file;
}

}  // namespace

uint64_t shared_fingerprint(const std::string& checkpoint) {
  return hash_string(0, data::read_file((fs::path(checkpoint) / layout::kShared).string()));
}

int64_t expert_index(const Config& config, const std::string& checkpoint,
                     const std::string& domain) {
  const auto& domains = config.data.domains;
  const auto it = std::find(domains.begin(), domains.end(), domain);
  if (it == domains.end())
    throw Error(checkpoint + ": no expert for domain '" + domain + "' (experts: " + [&] {
      std::string list;
      for (const auto& x : domains) list += (list.empty() ? "" : ", ") + x;
      return list;
    }() + ")");
  return it - domains.begin();
}

std::vector<ExpertInfo> list_experts(const std::string& checkpoint_or_run) {
  const auto checkpoint = checkpoint::resolve_checkpoint(checkpoint_or_run);
  std::vector<ExpertInfo> out;
  for (const auto& domain : demix_config(checkpoint).data.domains) {
    ExpertInfo info;
    info.domain = domain;
    const auto file = checked_expert_file(checkpoint, expert_file(checkpoint, domain), domain);
    for (const auto& [name, t] : load_safetensors(file.string())) info.parameters += t.numel();
    info.bytes = int64_t(fs::file_size(file));
    const auto optimizer = optimizer_file(checkpoint, domain);
    if (fs::exists(optimizer))
      for (const auto& [name, t] :
           load_safetensors(checked_expert_file(checkpoint, optimizer, domain).string()))
        if (name.rfind("step/", 0) == 0)
          info.steps = std::max(info.steps, int64_t(t.item<float>()));
    out.push_back(info);
  }
  return out;
}

void remove_expert(const std::string& checkpoint, const std::string& domain,
                   const std::string& out) {
  const auto source = checkpoint::resolve_checkpoint(checkpoint);
  auto config = demix_config(source);
  expert_index(config, source, domain);
  if (config.data.domains.size() == 1)
    throw Error(source + ": '" + domain + "' is the only expert; a DEMix model needs one");
  derive(source, out, [&](const fs::path& dir, Config& c) {
    fs::remove(expert_file(dir, domain));
    fs::remove(optimizer_file(dir, domain));
    c.data.domains.erase(std::find(c.data.domains.begin(), c.data.domains.end(), domain));
    c.data.eval_domains.push_back(domain);
  });
}

void add_expert(const std::string& checkpoint, const std::string& from, const std::string& domain,
                const std::string& out) {
  const auto source = checkpoint::resolve_checkpoint(checkpoint);
  const auto donor = checkpoint::resolve_checkpoint(from);
  const auto config = demix_config(source);
  const auto& domains = config.data.domains;
  if (std::find(domains.begin(), domains.end(), domain) != domains.end())
    throw Error(source + ": already has an expert for domain '" + domain + "'");
  expert_index(demix_config(donor), donor, domain);
  if (shared_fingerprint(source) != shared_fingerprint(donor))
    throw Error(donor + ": shared parameters differ from " + source +
                "'s (fingerprint mismatch): its experts were trained on another model");
  derive(source, out, [&](const fs::path& dir, Config& c) {
    fs::copy_file(checked_expert_file(donor, expert_file(donor, domain), domain),
                  expert_file(dir, domain));
    if (fs::exists(optimizer_file(donor, domain)))
      fs::copy_file(checked_expert_file(donor, optimizer_file(donor, domain), domain),
                    optimizer_file(dir, domain));
    c.data.domains.push_back(domain);
    auto& novel = c.data.eval_domains;
    novel.erase(std::remove(novel.begin(), novel.end(), domain), novel.end());
  });
}

void merge_experts(const std::string& checkpoint, const std::vector<std::string>& domains,
                   const std::vector<double>& weights, const std::string& as,
                   const std::string& out) {
  const auto source = checkpoint::resolve_checkpoint(checkpoint);
  const auto config = demix_config(source);
  if (domains.empty()) throw Error("--domains: expected at least one expert to merge");
  if (weights.size() != domains.size())
    throw Error("--weights: " + std::to_string(weights.size()) + " weights for " +
                std::to_string(domains.size()) + " domains");
  const double total = std::accumulate(weights.begin(), weights.end(), 0.0);
  if (!(total > 0) || std::any_of(weights.begin(), weights.end(), [](double w) { return w < 0; }))
    throw Error("--weights: expected non-negative weights with a positive sum");
  for (size_t i = 0; i < domains.size(); ++i) {
    expert_index(config, source, domains[i]);
    if (std::find(domains.begin(), domains.begin() + long(i), domains[i]) !=
        domains.begin() + long(i))
      throw Error("--domains lists '" + domains[i] + "' twice (give each expert once, weight it)");
  }
  const auto& existing = config.data.domains;
  if (std::find(existing.begin(), existing.end(), as) != existing.end())
    throw Error(source + ": already has an expert for domain '" + as + "' (choose another --as)");

  TensorDict merged;
  for (size_t i = 0; i < domains.size(); ++i)
    for (const auto& [name, t] : load_safetensors(
             checked_expert_file(source, expert_file(source, domains[i]), domains[i]).string())) {
      const auto scaled = t.to(at::kDouble) * (weights[i] / total);
      merged[name] = merged.count(name) ? merged[name] + scaled : scaled;
    }
  for (auto& [name, t] : merged) t = t.to(at::kFloat);
  derive(source, out, [&](const fs::path& dir, Config& c) {
    save_safetensors(expert_file(dir, as).string(), merged, checkpoint::expert_file_metadata(as));
    const auto template_state = optimizer_file(dir, domains[0]);
    if (fs::exists(template_state)) {  // a fresh optimizer state of the right shapes
      auto state = load_safetensors(template_state.string());
      for (auto& [name, t] : state) t.zero_();
      save_safetensors(optimizer_file(dir, as).string(), state,
                       checkpoint::expert_file_metadata(as));
    }
    c.data.domains.push_back(as);
    auto& novel = c.data.eval_domains;
    novel.erase(std::remove(novel.begin(), novel.end(), as), novel.end());
  });
}

}  // namespace demix::checkpoint
