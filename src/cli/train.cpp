// `demix train`: train a DEMix or dense model from a config.

#include "demix/train/trainer.h"
#include "options.h"

namespace demix::cli {

void add_train_command(CLI::App& app) {
  auto options = std::make_shared<ConfigOptions>();
  auto resume = std::make_shared<std::string>();
  auto* command = app.add_subcommand("train", "train a model (single process)");
  options->add_to(*command);
  command->add_option("--resume", *resume,
                      "checkpoint or run directory to continue from; 'auto': the run's latest");
  command->callback([options, resume] {
    train::Trainer trainer(options->load(), *resume);
    trainer.run();
  });
}

}  // namespace demix::cli
