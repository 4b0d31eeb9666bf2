#include "demix/parallel/process_groups.h"

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "demix/core/error.h"

namespace demix::parallel {

c10::intrusive_ptr<c10d::Store> connect_store(const DistEnv& env,
                                              std::chrono::milliseconds timeout) {
  c10d::TCPStoreOptions options;
  options.port = uint16_t(env.master_port);
  options.isServer = env.rank == 0 && !env.agent_store;
  options.numWorkers = env.agent_store ? std::nullopt : std::optional<size_t>(env.world_size);
  options.waitWorkers = !env.agent_store;
  options.timeout = timeout;
  const auto where = env.master_addr + ":" + std::to_string(env.master_port);
  try {
    return c10::make_intrusive<c10d::TCPStore>(env.master_addr, options);
  } catch (const c10::Error& e) {  // c10d's message spans lines: keep its first
    const std::string what = e.what_without_backtrace();
    throw Error("rank " + std::to_string(env.rank) +
                (options.isServer ? ": cannot serve the rendezvous store on "
                                  : ": cannot reach the rendezvous store at ") +
                where +
                " (MASTER_ADDR, MASTER_PORT; port in use?): " + what.substr(0, what.find('\n')));
  }
}

ProcessGroups::ProcessGroups(const Placement& placement, int rank,
                             const c10::intrusive_ptr<c10d::Store>& store, const std::string& kind,
                             std::chrono::milliseconds timeout)
    : placement_(placement),
      rank_(rank),
      store_(c10::make_intrusive<c10d::PrefixStore>("demix", store)) {
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

void ProcessGroups::report_progress(int64_t step) {
  store_->set("progress/" + std::to_string(rank_), std::to_string(step));
}

std::string ProcessGroups::describe_progress(int64_t step) {
  std::string behind;
  try {
    for (int r = 0; r < world_size(); ++r) {
      const auto key = "progress/" + std::to_string(r);
      const auto at = store_->check({key}) ? store_->get_to_str(key) : "none";
      if (at == "none" || std::stoll(at) < step)
        behind += (behind.empty() ? "" : ", ") +
                  ("rank " + std::to_string(r) + " (last step " + at + ")");
    }
  } catch (const std::exception&) {
    return "the rendezvous store is unreachable: rank 0, its host, is probably dead";
  }
  const auto sync = "the gradient sync of step " + std::to_string(step);
  return behind.empty() ? "every rank reached " + sync + " (one may have died in it)"
                        : "ranks that never reached " + sync + ": " + behind;
}

}  // namespace demix::parallel
