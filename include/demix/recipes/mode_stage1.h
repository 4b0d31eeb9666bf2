#pragma once

#include <string>
#include <vector>

#include "demix/core/config.h"
#include "demix/parallel/process_groups.h"

namespace demix::recipes {

// MoDE stage 1 (mode.stage=1): one single-expert model per entry of config.data.domains, each
// trained on its domain alone under <train.out_dir>/<domain>. With a launch, runs are spread over
// the ranks as experts are (parallel::Placement(W, N)): run d on ranks_of(d), each with its own
// process groups, several runs in turn on one rank when W < N. Returns the runs' configs.
std::vector<Config> mode_stage1_configs(const Config& config);
void run_mode_stage1(const Config& config, const std::string& resume,
                     const parallel::Launch* launch);

}  // namespace demix::recipes
