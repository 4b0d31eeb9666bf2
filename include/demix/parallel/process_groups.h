#pragma once

// The c10d process groups of a run, built once from a Placement in a fixed order and passed by
// reference: `world` (shared gradients, metrics, barriers) and one group per expert hosted by
// more than one rank (its gradients). Gloo on CPU, NCCL on CUDA; the choice is made here only.

#include <chrono>
#include <map>
#include <string>
#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include "demix/parallel/env.h"
#include "demix/parallel/placement.h"

namespace demix::parallel {

using Group = c10::intrusive_ptr<c10d::Backend>;

// The rendezvous store of a torchrun-style launch: a TCPStore at MASTER_ADDR:MASTER_PORT, served
// by rank 0 unless the torchrun agent serves it already.
c10::intrusive_ptr<c10d::Store> connect_store(const DistEnv& env,
                                              std::chrono::milliseconds timeout);

// One backend over `size` ranks on `store`; `kind` is "gloo" or "nccl". Defined in backend.cpp,
// the only file that includes the backends' headers.
Group make_group(const std::string& kind, const c10::intrusive_ptr<c10d::Store>& store, int rank,
                 int size, std::chrono::milliseconds timeout);

// What a rank of a launch needs to build process groups: its environment, the rendezvous store,
// the backend kind and the collective timeout.
struct Launch {
  DistEnv env;
  c10::intrusive_ptr<c10d::Store> store;
  std::string backend;
  std::chrono::milliseconds timeout;
};

class ProcessGroups {
 public:
  ProcessGroups(const Placement& placement, int rank, const c10::intrusive_ptr<c10d::Store>& store,
                const std::string& kind, std::chrono::milliseconds timeout);

  const Placement& placement() const { return placement_; }
  int rank() const { return rank_; }
  int world_size() const { return placement_.world_size(); }
  c10d::Backend& world() { return *world_; }
  // The group of a hosted expert, or nullptr when the expert has this rank alone.
  c10d::Backend* expert(int expert);
  void barrier();

  // Progress in the store, to name the rank a failed collective waited for: each rank records
  // the step whose gradient sync it reaches (one small store write per step);
  // `describe_progress(step)` names the ranks that did not reach it, or says that the store is
  // unreachable (its host, rank 0, is gone).
  void report_progress(int64_t step);
  std::string describe_progress(int64_t step);

 private:
  Placement placement_;
  int rank_;
  c10::intrusive_ptr<c10d::Store> store_;
  Group world_;
  std::map<int, Group> experts_;
};

}  // namespace demix::parallel
