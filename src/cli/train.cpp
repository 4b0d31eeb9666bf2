// `demix train`: train a DEMix or dense model from a config, in one process or as one rank of a
// torchrun-style launch (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT in the environment).

#include "demix/dist/env.h"
#include "demix/dist/process_groups.h"
#include "demix/train/trainer.h"
#include "options.h"

namespace demix::cli {

void add_train_command(CLI::App& app) {
  auto options = std::make_shared<ConfigOptions>();
  auto resume = std::make_shared<std::string>();
  auto* command = app.add_subcommand(
      "train", "train a model (one process, or one rank under torchrun / demix launch)");
  options->add_to(*command);
  command->add_option("--resume", *resume,
                      "checkpoint or run directory to continue from; 'auto': the run's latest");
  command->callback([options, resume] {
    auto config = options->load();
    const auto env = dist::DistEnv::from_environment();
    if (env.world_size == 1) {
      train::Trainer trainer(config, *resume);
      trainer.run();
      return;
    }
    if (env.rank != 0) spdlog::set_level(spdlog::level::warn);
    spdlog::set_pattern("[%H:%M:%S rank " + std::to_string(env.rank) + "] %v");
    const bool cuda = config.train.device.rfind("cuda", 0) == 0;
    if (cuda && config.train.device == "cuda")
      config.train.device = "cuda:" + std::to_string(env.local_rank);
    const auto backend = config.dist.backend != "auto" ? config.dist.backend
                         : cuda                        ? "nccl"
                                                       : "gloo";
    const std::chrono::milliseconds timeout(config.dist.timeout_s * 1000);
    const dist::Placement placement(env.world_size, int(config.n_experts()));
    dist::ProcessGroups groups(placement, env.rank, dist::connect_store(env, timeout), backend,
                               timeout);
    train::Trainer trainer(config, *resume, &groups);
    trainer.run();
    groups.barrier();  // nobody exits while another rank still needs it
  });
}

}  // namespace demix::cli
