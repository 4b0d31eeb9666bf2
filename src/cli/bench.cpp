// `demix bench`: throughput, MFU and peak memory of a config, against the PyTorch reference.

#include "demix/bench/bench.h"

#include <iostream>

#include "options.h"

namespace demix::cli {

void add_bench_command(CLI::App& app) {
  auto options = std::make_shared<ConfigOptions>();
  auto bench = std::make_shared<bench::BenchOptions>();
  auto no_reference = std::make_shared<bool>(false);
  auto no_compile = std::make_shared<bool>(false);
  auto* command = app.add_subcommand(
      "bench", "training and evaluation throughput and MFU, against PyTorch eager and compile");
  options->add_to(*command);
  command->add_option("--steps", bench->steps, "timed training steps")->capture_default_str();
  command->add_option("--warmup", bench->warmup, "untimed steps first")->capture_default_str();
  command
      ->add_option("--rounds", bench->rounds,
                   "alternate ours and the reference this many times; medians across rounds "
                   "(a noisy shared machine)")
      ->check(CLI::Range(int64_t(1), int64_t(1000)))
      ->capture_default_str();
  command->add_option("--eval-tokens", bench->eval_tokens, "tokens per evaluation measurement")
      ->capture_default_str();
  command->add_option("-o,--out", bench->out, "report directory")->required();
  command->add_option("--profile", bench->profile_steps,
                      "profile N more steps: self time per op (profile.md) and a Chrome trace");
  command->add_flag("--no-reference", *no_reference, "skip the PyTorch reference");
  command->add_flag("--no-compile", *no_compile, "the reference in eager mode only");
  command->callback([options, bench, no_reference, no_compile] {
    bench->reference = !*no_reference;
    bench->compile = !*no_compile;
    std::cout << bench::run_bench(options->load(), *bench);
  });
}

}  // namespace demix::cli
