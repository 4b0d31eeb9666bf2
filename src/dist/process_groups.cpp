#include "demix/dist/process_groups.h"

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

namespace demix::dist {

c10::intrusive_ptr<c10d::Store> connect_store(const DistEnv& env,
                                              std::chrono::milliseconds timeout) {
  c10d::TCPStoreOptions options;
  options.port = uint16_t(env.master_port);
  options.isServer = env.rank == 0 && !env.agent_store;
  options.numWorkers = env.agent_store ? std::nullopt : std::optional<size_t>(env.world_size);
  options.waitWorkers = !env.agent_store;
  options.timeout = timeout;
  return c10::make_intrusive<c10d::TCPStore>(env.master_addr, options);
}

ProcessGroups::ProcessGroups(const Placement& placement, int rank,
                             const c10::intrusive_ptr<c10d::Store>& store, const std::string& kind,
                             std::chrono::milliseconds timeout)
    : placement_(placement), rank_(rank) {
  world_ = make_group(kind, c10::make_intrusive<c10d::PrefixStore>("world", store), rank,
                      placement.world_size(), timeout);
  // Every rank walks the experts in the same order; only a group's members join it.
  for (int e = 0; e < placement.n_experts(); ++e) {
    const auto ranks = placement.ranks_of(e);
    const int member = placement.replica_of(rank, e);
    if (ranks.size() < 2 || member < 0) continue;
    experts_[e] = make_group(
        kind, c10::make_intrusive<c10d::PrefixStore>("expert_" + std::to_string(e), store), member,
        int(ranks.size()), timeout);
  }
}

c10d::Backend* ProcessGroups::expert(int expert) {
  const auto it = experts_.find(expert);
  return it == experts_.end() ? nullptr : it->second.get();
}

void ProcessGroups::barrier() { world_->barrier()->wait(); }

}  // namespace demix::dist
