// `demix adapt`: DEMix-DAPT or Dense-DAPT of a checkpoint on a new domain, then evaluation of
// every old and new domain.

#include <iostream>

#include "demix/adapt/dapt.h"
#include "demix/eval/mixture_table.h"
#include "demix/eval/perplexity.h"
#include "demix/train/trainer.h"
#include "options.h"

namespace demix::cli {

void add_adapt_command(CLI::App& app) {
  auto options = std::make_shared<ConfigOptions>();
  auto* command = app.add_subcommand(
      "adapt", "adapt a checkpoint to a new domain (DEMix-DAPT: a new expert; Dense-DAPT)");
  options->add_to(*command);
  command->callback([options] {
    const auto run = adapt::prepare_adaptation(options->load());
    train::Trainer trainer(run);
    trainer.run();
    // Every old and new domain: with the cached prior (and known-domain top-1) for DEMix,
    // directly for a dense model.
    auto& model = trainer.model();
    std::string table;
    if (run.n_experts() > 0) {
      table = eval::format_mixture_table(eval::mixture_table(model, run));
    } else {
      table = eval::format_table(eval::evaluate(model, run, {"test"}, run.eval.max_tokens));
    }
    std::cout << table;
    write_file_atomic(run.train.out_dir + "/eval.md", table);
    spdlog::info("wrote {}/eval.md", run.train.out_dir);
  });
}

}  // namespace demix::cli
