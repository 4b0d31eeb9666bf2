// Joining a torchrun-style launch, shared by the commands that run on several ranks.

#include "demix/parallel/env.h"
#include "options.h"

namespace demix::cli {

std::optional<parallel::Launch> join_launch(Config& config) {
  const auto env = parallel::DistEnv::from_environment();
  if (env.world_size == 1) return std::nullopt;
  // An uneven split of the experts (or of MoDE's stage-1 runs) is refused before any rank waits
  // for the others at the store.
  const bool stage1 = config.is_mode() && config.mode.stage == 1;
  parallel::Placement(env.world_size,
                      int(stage1 ? config.data.domains.size() : config.n_experts()));
  if (env.rank != 0) spdlog::set_level(spdlog::level::warn);
  spdlog::set_pattern("[%H:%M:%S rank " + std::to_string(env.rank) + "] %v");
  const bool cuda = config.train.device.rfind("cuda", 0) == 0;
  if (config.train.device == "cuda") config.train.device = "cuda:" + std::to_string(env.local_rank);
  const auto backend = config.dist.backend != DistBackend::kAuto ? to_string(config.dist.backend)
                       : cuda                                    ? "nccl"
                                                                 : "gloo";
  const std::chrono::milliseconds timeout(config.dist.timeout_s * 1000);
  return parallel::Launch{env, parallel::connect_store(env, timeout), backend, timeout};
}

std::unique_ptr<parallel::ProcessGroups> join_process_groups(Config& config) {
  const auto launch = join_launch(config);
  if (!launch) return nullptr;
  const parallel::Placement placement(launch->env.world_size, int(config.n_experts()));
  return std::make_unique<parallel::ProcessGroups>(placement, launch->env.rank, launch->store,
                                                   launch->backend, launch->timeout);
}

}  // namespace demix::cli
