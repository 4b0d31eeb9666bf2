// `demix adapt`: DEMix-DAPT or Dense-DAPT of a checkpoint on a new domain, then evaluation of
// every old and new domain.

#include <iostream>

#include "demix/core/file.h"
#include "demix/core/json.h"
#include "demix/eval/mixture_table.h"
#include "demix/eval/perplexity.h"
#include "demix/recipes/dapt.h"
#include "demix/train/stop_signal.h"
#include "demix/train/trainer.h"
#include "options.h"

namespace demix::cli {

void add_adapt_command(CLI::App& app) {
  auto options = std::make_shared<ConfigOptions>();
  auto* command = app.add_subcommand(
      "adapt", "adapt a checkpoint to a new domain (DEMix-DAPT: a new expert; Dense-DAPT)");
  options->add_to(*command);
  command->callback([options] {
    const auto run = recipes::prepare_adaptation(options->load());
    train::Trainer trainer(run);
    if (const int stopped_by = trainer.run()) train::exit_by_signal(stopped_by);
    // Every old and new domain: with the cached prior (and known-domain top-1) for DEMix,
    // directly for a dense model.
    auto& model = trainer.model();
    // The same report files as `demix eval` (--mixture) writes, for the experiment scripts.
    const auto& out = run.train.out_dir;
    std::string table;
    if (run.n_experts() > 0) {
      const auto rows = eval::mixture_table(model, run);
      table = eval::format_mixture_table(rows);
      write_json_file(out + "/mixture.json", eval::mixture_json(rows, run.data.domains));
    } else {
      const auto scores = eval::evaluate(model, run, {"test"}, run.eval.max_tokens);
      table = eval::format_table(scores);
      write_json_file(out + "/eval.json", eval::to_json(scores));
    }
    std::cout << table;
    write_file_atomic(out + "/eval.md", table);
    spdlog::info("wrote {}/eval.md and {}", out,
                 run.n_experts() > 0 ? "mixture.json" : "eval.json");
  });
}

}  // namespace demix::cli
