// `demix train`: train a DEMix or dense model from a config, in one process or as one rank of a
// torchrun-style launch (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT in the environment).

#include "demix/recipes/mode_stage1.h"
#include "demix/train/stop_signal.h"
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
    if (config.is_mode() && config.mode.stage == 1) {  // one run per domain
      const auto launch = join_launch(config);
      return recipes::run_mode_stage1(config, *resume, launch ? &*launch : nullptr);
    }
    const auto groups = join_process_groups(config);
    train::Trainer trainer(config, *resume, groups.get());
    const int stopped_by = trainer.run();
    if (groups) groups->barrier();  // nobody exits while another rank still needs it
    if (stopped_by) train::exit_by_signal(stopped_by);
  });
}

}  // namespace demix::cli
