#include "demix/core/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "demix/core/error.h"

namespace demix {
namespace {

std::string type_name(const int64_t&) { return "an integer"; }
std::string type_name(const uint64_t&) { return "a non-negative integer"; }
std::string type_name(const double&) { return "a number"; }
std::string type_name(const bool&) { return "true or false"; }
std::string type_name(const std::string&) { return "a string"; }
std::string type_name(const SourceConfig&) { return "a map"; }
template <class E, std::enable_if_t<is_choice<E>::value, int> = 0>
std::string type_name(const E&) {
  return "a string";  // as YAML spells it
}
template <class T>
std::string type_name(const std::vector<T>&) {
  return "a list of " + type_name(T{}).substr(type_name(T{}).find(' ') + 1) + "s";
}

template <class T>
T scalar_as(const YAML::Node& node) {
  if (!node.IsScalar()) throw YAML::BadConversion(node.Mark());
  return node.as<T>();
}

// "section.key" -> "section.key=value: expected a or b" for each choice given an unknown value;
// validate reports it where it always has, so the first broken rule is still the one named.
using BadChoices = std::map<std::string, std::string>;

// Reads one section's fields from a YAML map, refusing unknown keys and wrong types.
class SectionReader {
 public:
  // `section` is "data", or "data.sources[0]" for an item of a list of maps; messages start with
  // "<source>: <section>.<key>".
  SectionReader(const YAML::Node& node, std::string source, std::string section, BadChoices& bad)
      : node_(node),
        source_(std::move(source)),
        section_(std::move(section)),
        where_(source_ + ": " + section_),
        bad_(bad) {
    for (const auto& kv : node_) unseen_.insert(kv.first.as<std::string>());
  }

  template <class T>
  void operator()(const char* key, T& field, const char*) {
    unseen_.erase(key);
    key_ = key;
    const YAML::Node value = node_[key];
    if (!value) return;
    try {
      if constexpr (is_choice<T>::value) {
        const auto name = scalar_as<std::string>(value);
        if (const auto parsed = parse_choice<T>(name)) {
          field = *parsed;
        } else {
          const auto full = section_ + "." + key;
          bad_[full] = full + "=" + name + ": expected " + choice_list<T>();
        }
      } else {
        read(value, field);
      }
    } catch (const YAML::Exception&) {
      throw Error(where_ + "." + key + ": expected " + type_name(field) + ", got '" +
                  YAML::Dump(value) + "'");
    }
    if (!is_finite(field))  // YAML reads .inf and .nan as numbers; no key means either
      throw Error(where_ + "." + key + ": expected a finite number, got '" + YAML::Dump(value) +
                  "'");
  }

  void finish() const {
    if (!unseen_.empty()) throw Error(where_ + "." + *unseen_.begin() + ": unknown key");
  }

 private:
  template <class T>
  void read(const YAML::Node& value, T& field) const {
    field = scalar_as<T>(value);
  }
  template <class T>
  static bool is_finite(const T&) {
    return true;
  }
  static bool is_finite(const double& value) { return std::isfinite(value); }
  template <class T>
  void read(const YAML::Node& value, std::vector<T>& field) const {
    if (!value.IsSequence()) throw YAML::BadConversion(value.Mark());
    field.clear();
    for (const auto& item : value) field.push_back(scalar_as<T>(item));
  }
  // A list of maps (data.sources): each item read like a section, named by its index.
  void read(const YAML::Node& value, std::vector<SourceConfig>& field) const {
    if (!value.IsSequence()) throw YAML::BadConversion(value.Mark());
    field.clear();
    for (const auto& item : value) {
      const auto name = "[" + std::to_string(field.size()) + "]";
      if (!item.IsMap()) throw Error(where_ + "." + key_ + name + ": expected a map of keys");
      BadChoices bad;
      SectionReader reader(item, source_, section_ + "." + key_ + name, bad);
      field.emplace_back().visit(reader);
      reader.finish();
      if (!bad.empty()) throw Error(source_ + ": " + bad.begin()->second);
    }
  }

  const YAML::Node& node_;
  std::string source_;
  std::string section_;
  std::string where_;
  BadChoices& bad_;
  std::set<std::string> unseen_;
  std::string key_;  // the key being read
};

class SectionWriter {
 public:
  explicit SectionWriter(YAML::Emitter& out) : out_(out) {}
  template <class T>
  void operator()(const char* key, const T& field, const char*) {
    out_ << YAML::Key << key << YAML::Value;
    write(field);
  }
  void write_item(const SourceConfig& source) { write(source); }

 private:
  template <class T>
  void write(const T& value) {
    if constexpr (is_choice<T>::value)
      out_ << to_string(value);
    else
      out_ << value;
  }
  void write(const double& value) {
    std::ostringstream s;  // round-trips exactly and always reads back as a number
    s.precision(17);
    s << value;
    std::string text = s.str();
    if (text.find_first_of(".eEn") == std::string::npos) text += ".0";
    out_ << text;
  }
  template <class T>
  void write(const std::vector<T>& values) {
    out_ << YAML::Flow << YAML::BeginSeq;
    for (const auto& v : values) write(v);
    out_ << YAML::EndSeq;
  }
  void write(const SourceConfig& source) {
    out_ << YAML::BeginMap;
    SectionWriter fields(out_);
    auto copy = source;  // visit takes its fields by reference
    copy.visit(fields);
    out_ << YAML::EndMap;
  }
  YAML::Emitter& out_;
};

// Layers `top` over `base`, key by key inside each section.
void merge_into(YAML::Node base, const YAML::Node& top) {
  for (const auto& section : top) {
    const auto name = section.first.as<std::string>();
    if (section.second.IsMap() && base[name] && base[name].IsMap()) {
      for (const auto& kv : section.second) base[name][kv.first.as<std::string>()] = kv.second;
    } else {
      base[name] = section.second;
    }
  }
}

// yaml-cpp keeps both entries of a key given twice and lookups see only the first: refuse it.
void check_unique_keys(const YAML::Node& node, const std::string& path, const std::string& where) {
  if (!node.IsMap()) return;
  std::set<std::string> seen;
  for (const auto& kv : node) {
    const auto key = kv.first.Scalar();
    const auto name = where.empty() ? key : where + "." + key;
    if (!seen.insert(key).second)
      throw Error(path + ":" + std::to_string(kv.first.Mark().line + 1) + ": " + name +
                  " is given twice");
    check_unique_keys(kv.second, path, name);
  }
}

// Reads a YAML config; a top-level `base: other.yaml` (relative to this file) is loaded first
// and this file's keys are layered over it.
YAML::Node load_yaml_file(const std::string& path, int depth = 0) {
  if (depth > 8) throw Error(path + ": base: chain deeper than 8 files (a cycle?)");
  std::ifstream in(path);
  // A directory opens but fails on the first read (found by fuzzing: `base: .`).
  if (!in || !std::filesystem::is_regular_file(path))
    throw Error(path + ": cannot open config file");
  YAML::Node root;
  try {
    root = YAML::Load(in);
  } catch (const YAML::ParserException& e) {
    throw Error(path + ":" + std::to_string(e.mark.line + 1) + ": invalid YAML: " + e.msg);
  }
  if (root.IsNull()) return YAML::Node(YAML::NodeType::Map);
  if (!root.IsMap()) throw Error(path + ": expected a YAML map of sections at the top level");
  check_unique_keys(root, path, "");
  if (!root["base"]) return root;
  if (!root["base"].IsScalar()) throw Error(path + ": base: expected a file name");
  const auto base_path =
      (std::filesystem::path(path).parent_path() / root["base"].as<std::string>()).string();
  if (!std::filesystem::is_regular_file(base_path))
    throw Error(path + ": base: " + base_path + " is not a config file");
  YAML::Node merged = load_yaml_file(base_path, depth + 1);
  root.remove("base");
  merge_into(merged, root);
  return merged;
}

void apply_override(YAML::Node& root, const std::string& assignment) {
  const auto eq = assignment.find('=');
  const auto dot = assignment.find('.');
  if (eq == std::string::npos || dot == std::string::npos || dot > eq)
    throw Error("--set " + assignment + ": expected section.key=value");
  const std::string section = assignment.substr(0, dot);
  const std::string key = assignment.substr(dot + 1, eq - dot - 1);
  YAML::Node value;
  try {
    value = YAML::Load(assignment.substr(eq + 1));
  } catch (const YAML::ParserException& e) {
    throw Error("--set " + assignment + ": value is not valid YAML: " + e.msg);
  }
  if (!root[section]) root[section] = YAML::Node(YAML::NodeType::Map);
  root[section][key] = value;
}

}  // namespace

namespace {
void validate_config(const Config& config, const std::string& source, const BadChoices& bad);

Config parse_config(YAML::Node root, const std::string& source,
                    const std::vector<std::string>& overrides) {
  for (const auto& o : overrides) apply_override(root, o);

  Config config;
  BadChoices bad;
  std::set<std::string> sections;
  auto read_section = [&](const char* name, auto& section) {
    sections.insert(name);
    const YAML::Node node = root[name];
    if (!node || node.IsNull()) return;
    if (!node.IsMap()) throw Error(source + ": " + name + ": expected a map of keys");
    SectionReader reader(node, source, name, bad);
    section.visit(reader);
    reader.finish();
  };
  config.visit_sections(read_section);
  for (const auto& kv : root) {
    const auto name = kv.first.as<std::string>();
    if (!sections.count(name)) throw Error(source + ": " + name + ": unknown section");
  }
  validate_config(config, source, bad);
  return config;
}
}  // namespace

Config load_config(const std::string& path, const std::vector<std::string>& overrides) {
  const auto source = path.empty() ? std::string("config") : path;
  try {
    return parse_config(path.empty() ? YAML::Node(YAML::NodeType::Map) : load_yaml_file(path),
                        source, overrides);
  } catch (const YAML::Exception& e) {  // e.g. a key that is a list (found by fuzzing)
    throw Error(source + ":" + std::to_string(e.mark.line + 1) + ": unexpected YAML: " + e.msg);
  }
}

Config with_overrides(const Config& base, const std::vector<std::string>& overrides) {
  return parse_config(YAML::Load(to_yaml(base)), "config", overrides);
}

void Config::validate(const std::string& source) const { validate_config(*this, source, {}); }

namespace {
void validate_config(const Config& config, const std::string& source, const BadChoices& bad) {
  const auto& model = config.model;
  const auto& data = config.data;
  const auto& tokenizer = config.tokenizer;
  const auto& optim = config.optim;
  const auto& train = config.train;
  const auto& eval = config.eval;
  const auto& dist = config.dist;
  const auto& mode = config.mode;
  const auto& cluster = config.cluster;
  auto fail = [&](const std::string& message) { throw Error(source + ": " + message); };
  // An unknown spelling of a choice key, in the place its rule has always been checked.
  auto known = [&](const char* key) {
    if (const auto it = bad.find(key); it != bad.end()) fail(it->second);
  };
  auto positive = [&](const char* key, int64_t value) {
    if (value <= 0) fail(std::string(key) + "=" + std::to_string(value) + ": expected > 0");
  };
  positive("model.vocab_size", model.vocab_size);
  positive("model.seq_len", model.seq_len);
  positive("model.d_model", model.d_model);
  positive("model.n_layer", model.n_layer);
  positive("model.n_head", model.n_head);
  if (model.d_model % model.n_head != 0)
    fail("model.d_model=" + std::to_string(model.d_model) +
         " is not divisible by model.n_head=" + std::to_string(model.n_head));
  if (model.d_ff < 0) fail("model.d_ff=" + std::to_string(model.d_ff) + ": expected >= 0");
  known("model.ff");
  for (auto layer : model.demix_layers)
    if (layer < 0 || layer >= model.n_layer)
      fail("model.demix_layers has " + std::to_string(layer) + ": expected 0.." +
           std::to_string(model.n_layer - 1));
  if (model.init_std <= 0) fail("model.init_std: expected > 0");
  known("model.expert_scope");
  if (model.expert_scope == ExpertScope::kBlock &&
      (model.ff != FeedForward::kDemix || !model.demix_layers.empty()))
    fail("model.expert_scope=block needs model.ff=demix and model.demix_layers=[]");
  if (model.lora_rank < 0) fail("model.lora_rank: expected >= 0");
  if (model.lora_rank > 0 && (model.ff != FeedForward::kDense || model.lora_alpha <= 0))
    fail("model.lora_rank > 0 needs model.ff=dense and model.lora_alpha > 0");

  if (data.domains.empty()) fail("data.domains: expected at least one training domain");
  std::set<std::string> names;
  for (const auto& d : data.domains) {
    if (!names.insert(d).second) fail("data.domains lists '" + d + "' twice");
  }
  for (const auto& d : config.all_domains())  // a domain names its folders of text and tokens
    if (d.empty() || d == "." || d == ".." || d.find('/') != std::string::npos)
      fail("data.domains/eval_domains has '" + d + "': expected a name usable as a folder name");
  for (const auto& d : data.eval_domains) {
    if (!names.insert(d).second)
      fail("data.eval_domains: '" + d + "' is listed twice or trained on");
  }
  positive("data.sequences_per_domain", data.sequences_per_domain);
  for (size_t i = 0; i < data.sources.size(); ++i) {
    const auto& src = data.sources[i];
    const auto name = "data.sources[" + std::to_string(i) + "]";
    if (src.format == SourceFormat::kTextDir) {
      if (src.paths.size() != 1) fail(name + ".paths: text_dir expects exactly one directory");
      if (!src.domain_field.empty() || !src.domain.empty() || src.split != SourceSplit::kHash)
        fail(name + ": text_dir takes domains and splits from its layout, not domain/split keys");
      continue;
    }
    if (src.paths.empty()) fail(name + ".paths: expected at least one file or glob");
    if (src.text_field.empty()) fail(name + ".text_field: expected a field name");
    if (src.domain_field.empty() == src.domain.empty())
      fail(name + ": expected exactly one of domain_field (a field per document) or domain");
  }
  auto fraction = [&](const char* key, double value) {
    if (!(value >= 0 && value < 1)) fail(std::string(key) + ": expected 0 <= fraction < 1");
  };
  fraction("data.valid_fraction", data.valid_fraction);
  fraction("data.test_fraction", data.test_fraction);
  if (data.valid_fraction + data.test_fraction >= 1)
    fail("data.valid_fraction + data.test_fraction: expected < 1, leaving a train split");
  if (data.valid_documents < 0 || data.test_documents < 0 || data.workers < 0)
    fail("data.valid_documents, test_documents, workers: expected >= 0");
  positive("data.memory_mb", data.memory_mb);
  positive("data.chunk_bytes", data.chunk_bytes);
  positive("data.shard_tokens", data.shard_tokens);
  known("data.sampling");
  if (model.ff == FeedForward::kDemix && data.sampling != DataSampling::kBalanced)
    fail("data.sampling=natural needs model.ff=dense: DEMix trains k sequences per expert");
  known("tokenizer.type");
  positive("tokenizer.sample_bytes_per_domain", tokenizer.sample_bytes_per_domain);

  positive("train.steps", train.steps);
  positive("train.grad_accum", train.grad_accum);
  if (optim.lr <= 0) fail("optim.lr: expected > 0");
  if (optim.min_lr < 0 || optim.min_lr > optim.lr) fail("optim.min_lr: expected 0 <= min_lr <= lr");
  known("optim.schedule");
  if (optim.warmup_steps < 0) fail("optim.warmup_steps: expected >= 0");
  if (optim.beta1 < 0 || optim.beta1 >= 1 || optim.beta2 < 0 || optim.beta2 >= 1)
    fail("optim.beta1/beta2: expected values in [0, 1)");
  if (optim.weight_decay < 0 || optim.eps <= 0 || optim.grad_clip < 0)
    fail("optim: weight_decay and grad_clip must be >= 0 and eps > 0");

  positive("train.log_every", train.log_every);
  positive("train.eval_tokens", train.eval_tokens);
  positive("train.keep_checkpoints", train.keep_checkpoints);
  if (train.threads < 0 || train.eval_every < 0 || train.checkpoint_every < 0)
    fail("train.threads, eval_every, checkpoint_every: expected >= 0");
  if (train.out_dir.empty()) fail("train.out_dir: expected a directory");
  known("train.cpu_gemm");
  known("train.precision");
  for (const auto& d : train.train_domains)
    if (std::find(data.domains.begin(), data.domains.end(), d) == data.domains.end())
      fail("train.train_domains has '" + d + "': expected one of data.domains");
  known("train.trainable");
  if (train.trainable == Trainable::kExperts && model.ff != FeedForward::kDemix)
    fail("train.trainable=experts needs model.ff=demix");
  known("train.nonfinite");
  if (train.nonfinite_limit < 0) fail("train.nonfinite_limit: expected >= 0");
  known("adapt.init");

  for (const auto& s : eval.splits)
    if (s != "train" && s != "valid" && s != "test")
      fail("eval.splits has '" + s + "': expected train, valid or test");
  if (eval.max_tokens < 0) fail("eval.max_tokens: expected >= 0");
  positive("eval.batch_size", eval.batch_size);
  known("dist.backend");
  positive("dist.timeout_s", dist.timeout_s);
  positive("dist.bucket_mb", dist.bucket_mb);
  known("eval.prior");
  if (!(eval.alpha > 0 && eval.alpha <= 1)) fail("eval.alpha: expected 0 < alpha <= 1");
  known("eval.posterior");
  positive("eval.top_k", eval.top_k);
  positive("eval.prior_blocks", eval.prior_blocks);
  if (eval.mix_max_tokens < 0) fail("eval.mix_max_tokens: expected >= 0");
  if (!(eval.router_temperature > 0) || !std::isfinite(eval.router_temperature))
    fail("eval.router_temperature: expected a finite value > 0");
  positive("eval.router_every", eval.router_every);
  if (cluster.k < 1) fail("cluster.k=" + std::to_string(cluster.k) + ": expected >= 1");
  if (cluster.svd_dims < 0) fail("cluster.svd_dims: expected >= 0 (0 = no SVD)");
  if (cluster.sample_documents < cluster.k)
    fail("cluster.sample_documents=" + std::to_string(cluster.sample_documents) +
         ": expected >= cluster.k=" + std::to_string(cluster.k));
  positive("cluster.iterations", cluster.iterations);
  positive("cluster.chunk_documents", cluster.chunk_documents);
  known("cluster.balance");

  if (mode.blocks < 0) fail("mode.blocks: expected >= 0");
  if (!config.is_mode()) {
    // An enum cannot hold an unknown spelling for later: refuse it even with MoDE off.
    for (const char* key : {"mode.train", "mode.expert_init", "mode.placement"}) known(key);
    return;
  }
  if (model.ff != FeedForward::kDense || model.domain_token || model.lora_rank > 0)
    fail("mode.blocks > 0 needs a dense backbone: model.ff=dense, no domain_token, no LoRA");
  if (model.n_layer % mode.blocks != 0)
    fail("mode.blocks=" + std::to_string(mode.blocks) +
         " does not divide model.n_layer=" + std::to_string(model.n_layer));
  positive("mode.layers_per_expert", mode.layers_per_expert);
  if (mode.stage != 1 && mode.stage != 2) fail("mode.stage: expected 1 or 2");
  if (mode.stage == 1 && mode.backbone.empty())
    fail("mode.stage=1 needs mode.backbone: the dense checkpoint to freeze");
  if (mode.stage == 2 && mode.experts_from.empty())
    fail("mode.stage=2 needs mode.experts_from: the out_dir of the stage-1 runs");
  known("mode.train");
  known("mode.expert_init");
  if (mode.expert_init == ExpertInit::kBackbone &&
      mode.layers_per_expert > model.n_layer / mode.blocks)
    fail("mode.expert_init=backbone: mode.layers_per_expert exceeds the block's " +
         std::to_string(model.n_layer / mode.blocks) + " backbone layers");
  known("mode.placement");
  if (train.trainable != Trainable::kAll)
    fail("mode.blocks > 0: set mode.train, not train.trainable");
}

}  // namespace

std::string to_yaml(Config config) {
  YAML::Emitter out;
  out << YAML::BeginMap;
  auto write_section = [&](const char* name, auto& section) {
    out << YAML::Key << name << YAML::Value << YAML::BeginMap;
    SectionWriter writer(out);
    section.visit(writer);
    out << YAML::EndMap;
  };
  config.visit_sections(write_section);
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

namespace {
std::string dumped(const YAML::Node& value) {
  const auto text = YAML::Dump(value);
  return text.empty() ? "\"\"" : text;
}
}  // namespace

std::string config_reference() {
  const auto defaults = YAML::Load(to_yaml(Config{}));
  std::string out;
  auto describe_section = [&](const char* name, auto& section) {
    out +=
        std::string("\n## ") + name + "\n\n| key | type | default | meaning |\n|---|---|---|---|\n";
    auto describe = [&](const char* key, const auto& field, const char* doc) {
      const auto value = dumped(defaults[name][key]);
      out += std::string("| `") + name + "." + key + "` | " + type_name(field) + " | `" + value +
             "` | " + doc + " |\n";
      if constexpr (std::is_same_v<std::decay_t<decltype(field)>, std::vector<SourceConfig>>) {
        YAML::Emitter emitted;
        SectionWriter(emitted).write_item(SourceConfig{});
        const auto item = YAML::Load(emitted.c_str());
        auto describe_item = [&](const char* item_key, const auto& item_field,
                                 const char* item_doc) {
          out += std::string("| `") + name + "." + key + "[]." + item_key + "` | " +
                 type_name(item_field) + " | `" + dumped(item[item_key]) + "` | " + item_doc +
                 " |\n";
        };
        SourceConfig{}.visit(describe_item);
      }
    };
    section.visit(describe);
  };
  Config config;
  config.visit_sections(describe_section);
  return out;
}

}  // namespace demix
