#include "demix/recipes/mode_stage1.h"

#include <spdlog/spdlog.h>

#include <filesystem>
#include <memory>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>

#include "demix/core/error.h"
#include "demix/parallel/placement.h"
#include "demix/parallel/process_groups.h"
#include "demix/train/stop_signal.h"
#include "demix/train/trainer.h"

namespace demix::recipes {

namespace fs = std::filesystem;

std::vector<Config> mode_stage1_configs(const Config& config) {
  std::vector<Config> runs;
  for (const auto& domain : config.data.domains) {
    auto run = config;
    run.data.domains = {domain};
    run.train.out_dir = (fs::path(config.train.out_dir) / domain).string();
    runs.push_back(run);
  }
  return runs;
}

void run_mode_stage1(const Config& config, const std::string& resume,
                     const parallel::Launch* launch) {
  if (!resume.empty() && resume != "auto")
    throw Error("--resume " + resume + ": MoDE stage 1 trains several runs; use --resume auto");
  const auto runs = mode_stage1_configs(config);
  const int world = launch ? launch->env.world_size : 1, rank = launch ? launch->env.rank : 0;
  const parallel::Placement spread(world, int(runs.size()));  // runs are placed like experts
  for (int d : spread.experts_on(rank)) {
    const auto ranks = spread.ranks_of(d);
    std::unique_ptr<parallel::ProcessGroups> groups;
    if (ranks.size() > 1) {
      const auto store = c10::make_intrusive<c10d::PrefixStore>(
          "stage1/" + config.data.domains[size_t(d)], launch->store);
      groups = std::make_unique<parallel::ProcessGroups>(parallel::Placement(int(ranks.size()), 0),
                                                         spread.replica_of(rank, d), store,
                                                         launch->backend, launch->timeout);
    }
    spdlog::info("MoDE stage 1: training the expert of {} on {} rank(s)",
                 config.data.domains[size_t(d)], ranks.size());
    train::Trainer trainer(runs[size_t(d)], resume, groups.get());
    const int stopped_by = trainer.run();
    if (groups) groups->barrier();
    if (stopped_by) train::exit_by_signal(stopped_by);
  }
}

}  // namespace demix::recipes
