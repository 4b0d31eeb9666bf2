#pragma once

// Options every config-driven subcommand shares: --config FILE and repeated --set
// section.key=value.

#include <CLI/CLI.hpp>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "demix/core/config.h"
#include "demix/parallel/process_groups.h"

namespace demix::cli {

struct ConfigOptions {
  std::string path;
  std::vector<std::string> overrides;

  // `example`: a key this command reads, shown in its --help.
  void add_to(CLI::App& command, const std::string& example = "optim.lr=3e-4",
              bool required = true) {
    command.add_option("-c,--config", path, "YAML config file")->required(required);
    command.add_option("--set", overrides, "override a config key: --set " + example);
  }
  Config load() const { return load_config(path, overrides); }
};

// The process groups of a torchrun / demix launch (nullptr when WORLD_SIZE is 1). Sets a
// rank-tagged log pattern, quiets ranks other than 0, and binds "cuda" to cuda:LOCAL_RANK.
std::unique_ptr<parallel::ProcessGroups> join_process_groups(Config& config);
// The launch itself (std::nullopt when WORLD_SIZE is 1), for commands that build their own groups.
std::optional<parallel::Launch> join_launch(Config& config);

void add_data_commands(CLI::App& app);     // tokenizer, data
void add_train_command(CLI::App& app);     // train
void add_eval_command(CLI::App& app);      // eval
void add_prior_command(CLI::App& app);     // prior estimate
void add_config_command(CLI::App& app);    // config
void add_launch_command(CLI::App& app);    // launch
void add_expert_command(CLI::App& app);    // expert list|remove|add|merge
void add_adapt_command(CLI::App& app);     // adapt
void add_bench_command(CLI::App& app);     // bench
void add_export_command(CLI::App& app);    // export hf
void add_generate_command(CLI::App& app);  // generate
void add_cluster_commands(CLI::App& app);  // cluster, router

}  // namespace demix::cli
