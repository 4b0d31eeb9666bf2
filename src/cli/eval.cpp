// `demix eval`: perplexity per domain and split with known-domain routing.

#include <iostream>

#include "demix/core/device.h"
#include "demix/eval/perplexity.h"
#include "demix/train/checkpoint.h"
#include "options.h"

namespace demix::cli {

void add_eval_command(CLI::App& app) {
  auto checkpoint = std::make_shared<std::string>();
  auto overrides = std::make_shared<std::vector<std::string>>();
  auto output = std::make_shared<std::string>();
  auto* command = app.add_subcommand("eval", "perplexity per domain and split (top-1 routing)");
  command->add_option("checkpoint", *checkpoint, "checkpoint or run directory")->required();
  command->add_option("--set", *overrides, "override an eval/data key: --set eval.max_tokens=0");
  command->add_option("-o,--output", *output, "JSON report (default: <checkpoint>/eval.json)");
  command->callback([checkpoint, overrides, output] {
    const auto dir = train::resolve_checkpoint(*checkpoint);
    // The checkpoint's own config, with eval-time overrides layered on top.
    const auto config = with_overrides(train::checkpoint_config(dir), *overrides);

    if (config.train.threads > 0) at::set_num_threads(int(config.train.threads));
    model::Gpt model(model::GptConfig::from(config));
    train::load_model(dir, *model);
    model->to(resolve_device(config.train.device));
    const auto scores = eval::evaluate(*model, config, config.eval.splits, config.eval.max_tokens);
    std::cout << eval::format_table(scores);
    const auto path = output->empty() ? dir + "/eval.json" : *output;
    JsonObject report = eval::to_json(scores);
    report.add("checkpoint", dir);
    write_file_atomic(path, report.str() + "\n");
    spdlog::info("wrote {}", path);
  });
}

}  // namespace demix::cli
