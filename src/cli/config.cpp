// `demix config`: print the resolved config (defaults < file < --set), or one value of it.

#include <yaml-cpp/yaml.h>

#include <cstdio>
#include <iostream>

#include "demix/core/error.h"
#include "demix/model/gpt.h"
#include "demix/parallel/placement.h"
#include "options.h"

namespace demix::cli {
namespace {

// Counts come from the model itself, built with a single expert so that large shapes stay cheap.
void print_communication(const Config& config, int world) {
  auto gpt = model::GptConfig::from(config);
  const int64_t E = gpt.n_experts;
  if (E > 0) gpt.local_experts = {0};
  const model::Gpt model(gpt);
  const int64_t shared = model->num_params(false), per_expert = model->num_params() - shared;
  const parallel::Placement placement(world, int(E));
  const int64_t group = E > 0 ? int64_t(placement.ranks_of(0).size()) : world;
  const int64_t hosted = E > 0 ? int64_t(placement.experts_on(0).size()) : 0;
  const int64_t total = shared + E * per_expert;
  const double mb = 4.0 / 1e6;  // fp32 gradients
  std::printf("parameters: %.2fM shared, %.2fM per expert x %lld experts = %.2fM total\n",
              shared / 1e6, per_expert / 1e6, static_cast<long long>(E), total / 1e6);
  std::printf("on %d ranks (%lld per expert group, %lld experts per rank), per rank per step:\n",
              world, static_cast<long long>(group), static_cast<long long>(hosted));
  std::printf("  shared all-reduce over %d ranks: %.1f MB\n", world, shared * mb);
  std::printf("  expert all-reduce over %lld ranks: %.1f MB%s\n", static_cast<long long>(group),
              group > 1 ? hosted * per_expert * mb : 0.0,
              group > 1 ? "" : " (each expert has one rank: nothing to reduce)");
  std::printf("  dense DDP of the same %.2fM parameters: %.1f MB over %d ranks\n", total / 1e6,
              total * mb, world);
}

}  // namespace

void add_config_command(CLI::App& app) {
  auto options = std::make_shared<ConfigOptions>();
  auto key = std::make_shared<std::string>();
  auto* command = app.add_subcommand("config", "print the resolved config, or one key of it");
  options->add_to(*command, "optim.lr=3e-4", /*required=*/false);  // not for --reference
  command->add_option("--get", *key, "print only this key, e.g. train.out_dir");
  auto world = std::make_shared<int>(0);
  command->add_option("--comm", *world,
                      "print parameter counts and the bytes each rank all-reduces per step on "
                      "this many ranks, against dense DDP of the same total size");
  auto reference = std::make_shared<bool>(false);
  command->add_flag("--reference", *reference,
                    "print every key with its type, default and meaning (Markdown)");
  command->callback([options, key, world, reference] {
    if (*reference) {
      std::cout << config_reference();
      return;
    }
    if (options->path.empty()) throw Error("demix config: give the config file with --config");
    if (*world > 0) {
      print_communication(options->load(), *world);
      return;
    }
    const auto yaml = to_yaml(options->load());
    if (key->empty()) {
      std::cout << yaml;
      return;
    }
    const auto dot = key->find('.');
    const auto root = YAML::Load(yaml);
    const auto node =
        dot == std::string::npos ? YAML::Node() : root[key->substr(0, dot)][key->substr(dot + 1)];
    if (!node) throw Error("--get " + *key + ": no such key (expected section.key)");
    std::cout << (node.IsScalar() ? node.as<std::string>() : YAML::Dump(node)) << "\n";
  });
}

}  // namespace demix::cli
