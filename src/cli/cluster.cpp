// `demix cluster`: a corpus whose domains are clusters of the training documents, and its router.
// `demix router`: the cluster router of a labelled corpus (centres = the domains' mean features).

#include <spdlog/spdlog.h>

#include "demix/cluster/cluster_corpus.h"
#include "options.h"

namespace demix::cli {

void add_cluster_commands(CLI::App& app) {
  auto options = std::make_shared<ConfigOptions>();
  auto output = std::make_shared<std::string>();
  auto* cluster = app.add_subcommand(
      "cluster",
      "cluster the training documents of an encoded corpus into cluster.k domains (c-BTM): a new "
      "corpus, its config and a cluster router");
  options->add_to(*cluster, "cluster.k=8");
  cluster->add_option("-o,--output", *output, "directory to write (must not exist)")->required();
  cluster->callback([options, output] {
    cluster::write_cluster_corpus(options->load(), *output);
    spdlog::info(
        "next: demix data --config {0}/config.yaml, then demix train --config "
        "{0}/config.yaml",
        *output);
  });

  auto router_options = std::make_shared<ConfigOptions>();
  auto router_output = std::make_shared<std::string>();
  auto* router = app.add_subcommand(
      "router",
      "fit a cluster router on a labelled corpus: tf-idf features as demix cluster fits them, one "
      "centre per training domain");
  router_options->add_to(*router, "cluster.svd_dims=100");
  router->add_option("-o,--output", *router_output, "router file to write (.safetensors)")
      ->required();
  router->callback([router_options, router_output] {
    const auto config = router_options->load();
    cluster::fit_domain_router(config).save(*router_output,
                                            "demix router of " + config.data.tokens_dir);
    spdlog::info("wrote {}; use it with demix eval --set eval.router={}", *router_output,
                 *router_output);
  });
}

}  // namespace demix::cli
