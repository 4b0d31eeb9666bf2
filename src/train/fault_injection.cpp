#include "demix/train/fault_injection.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <sstream>
#include <string>
#include <thread>

#include "demix/core/error.h"

namespace demix::train {

FaultInjection FaultInjection::from_environment(int rank) {
  FaultInjection out;
  const char* value = std::getenv("DEMIX_FAULT");
  if (!value) return out;
  std::stringstream items(value);
  std::string item;
  while (std::getline(items, item, ',')) {
    char kind[16] = {};
    int fault_rank = -1;
    long long step = -1;
    if (std::sscanf(item.c_str(), "%15[a-z]:%d:%lld", kind, &fault_rank, &step) != 3 || step < 0)
      throw Error("DEMIX_FAULT=" + std::string(value) + ": expected KIND:RANK:STEP, got '" + item +
                  "'");
    static const std::map<std::string, Kind> kinds = {
        {"abort", Kind::kAbort}, {"hang", Kind::kHang}, {"nan", Kind::kNan}, {"kill", Kind::kKill}};
    const auto it = kinds.find(kind);
    if (it == kinds.end())
      throw Error("DEMIX_FAULT: kind '" + std::string(kind) +
                  "': expected abort, hang, nan or kill");
    if (fault_rank == rank) out.faults_.push_back({it->second, int64_t(step)});
  }
  return out;
}

void FaultInjection::before_step(int64_t step) const {
  for (const auto& f : faults_) {
    if (f.step != step) continue;
    if (f.kind == Kind::kAbort) {
      spdlog::error("DEMIX_FAULT: aborting at step {}", step);
      std::abort();
    }
    if (f.kind == Kind::kHang) {
      spdlog::error("DEMIX_FAULT: hanging at step {}", step);
      while (true) std::this_thread::sleep_for(std::chrono::hours(1));
    }
  }
}

void FaultInjection::during_checkpoint(int64_t step) const {
  for (const auto& f : faults_)
    if (f.kind == Kind::kKill && f.step == step) {
      spdlog::error("DEMIX_FAULT: SIGKILL while writing the checkpoint of step {}", step);
      ::raise(SIGKILL);
    }
}

bool FaultInjection::nan_loss_at(int64_t step) const {
  for (const auto& f : faults_)
    if (f.kind == Kind::kNan && f.step == step) return true;
  return false;
}

}  // namespace demix::train
