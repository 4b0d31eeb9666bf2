// `demix expert list|remove|add|merge`: experts as modules of a checkpoint.

#include <cstdio>

#include "demix/checkpoint/checkpoint.h"
#include "demix/checkpoint/expert_ops.h"
#include "demix/eval/mixture.h"
#include "options.h"

namespace demix::cli {

void add_expert_command(CLI::App& app) {
  struct Args {
    std::string checkpoint, domain, from, as, out, weights;
    std::vector<std::string> domains;
  };
  auto args = std::make_shared<Args>();
  auto* expert = app.add_subcommand("expert", "list, remove, add or merge experts of a checkpoint");
  expert->require_subcommand(1);

  auto* list = expert->add_subcommand("list", "experts with their domains, sizes and steps");
  list->add_option("checkpoint", args->checkpoint, "checkpoint or run directory")->required();
  list->callback([args] {
    std::printf("| domain | parameters | bytes | steps |\n|---|---:|---:|---:|\n");
    for (const auto& e : checkpoint::list_experts(args->checkpoint))
      std::printf("| %s | %lld | %lld | %lld |\n", e.domain.c_str(),
                  static_cast<long long>(e.parameters), static_cast<long long>(e.bytes),
                  static_cast<long long>(e.steps));
  });

  auto* remove = expert->add_subcommand("remove", "a new checkpoint without one expert");
  remove->add_option("checkpoint", args->checkpoint, "checkpoint or run directory")->required();
  remove->add_option("--domain", args->domain, "the expert to remove")->required();
  remove->add_option("--out", args->out, "the new checkpoint directory")->required();
  remove->callback([args] {
    checkpoint::remove_expert(args->checkpoint, args->domain, args->out);
    std::printf("wrote %s without expert %s\n", args->out.c_str(), args->domain.c_str());
  });

  auto* add = expert->add_subcommand("add", "a new checkpoint with an expert from another one");
  add->add_option("checkpoint", args->checkpoint, "checkpoint or run directory")->required();
  add->add_option("--from", args->from, "checkpoint holding the expert")->required();
  add->add_option("--domain", args->domain, "the expert to add")->required();
  add->add_option("--out", args->out, "the new checkpoint directory")->required();
  add->callback([args] {
    checkpoint::add_expert(args->checkpoint, args->from, args->domain, args->out);
    std::printf("wrote %s with expert %s from %s\n", args->out.c_str(), args->domain.c_str(),
                args->from.c_str());
  });

  auto* merge = expert->add_subcommand(
      "merge", "a new expert as the (prior-weighted) parameter average of existing ones");
  merge->add_option("checkpoint", args->checkpoint, "checkpoint or run directory")->required();
  merge->add_option("--domains", args->domains, "experts to average: A,B,...")
      ->required()
      ->delimiter(',');
  merge->add_option("--weights", args->weights,
                    "a prior file (demix prior estimate): its probabilities of --domains "
                    "weigh the average (default: equal weights)");
  merge->add_option("--as", args->as, "domain name of the new expert")->required();
  merge->add_option("--out", args->out, "the new checkpoint directory")->required();
  merge->callback([args] {
    std::vector<double> weights(args->domains.size(), 1.0);
    if (!args->weights.empty()) {
      const auto config =
          checkpoint::checkpoint_config(checkpoint::resolve_checkpoint(args->checkpoint));
      const auto prior = eval::read_prior(args->weights, config.data.domains);
      for (size_t i = 0; i < args->domains.size(); ++i) {
        const auto& all = config.data.domains;
        const auto it = std::find(all.begin(), all.end(), args->domains[i]);
        weights[i] = it == all.end() ? 0.0 : prior.probs()[size_t(it - all.begin())];
      }
    }
    checkpoint::merge_experts(args->checkpoint, args->domains, weights, args->as, args->out);
    std::printf("wrote %s with expert %s merged from %zu experts\n", args->out.c_str(),
                args->as.c_str(), args->domains.size());
  });
}

}  // namespace demix::cli
