#pragma once

// Gradient synchronisation for expert parallelism. Parameters are tagged once from their names
// (model::expert_of): shared ones are reduced over `world`, each expert's over its own group.
// Gradients are coalesced into flat buckets of at most `bucket_bytes`; all buckets are launched
// asynchronously, then waited on.
//
// Scale: every gradient becomes (sum over the ranks that hold the parameter) / W. With each rank's
// loss the mean over its own rows and every rank holding the same number of rows, that is exactly
// the gradient of the mean loss over the global batch, as one process computing the whole batch
// would get it: shared grads are the mean over all W ranks, and an expert's grad is the mean over
// its group times group_size/W (the share of the global batch its domain holds).

#include <ATen/core/Tensor.h>

#include <string>
#include <utility>
#include <vector>

#include "demix/dist/process_groups.h"

namespace demix::dist {

class GradSync {
 public:
  GradSync(const std::vector<std::pair<std::string, at::Tensor>>& named_params,
           ProcessGroups& groups, int64_t bucket_bytes);

  void sync();  // after backward, before clipping and the optimizer step

  // The global L2 norm of the whole model's gradient after sync(), identical on every rank:
  // shared parameters once, each expert once (not once per replica). A 0-dim tensor.
  at::Tensor global_norm();

  // Bytes all-reduced per step by this rank: shared, and expert.
  int64_t shared_bytes() const { return shared_bytes_; }
  int64_t expert_bytes() const { return expert_bytes_; }

 private:
  struct Bucket {
    c10d::Backend* group;  // nullptr: the expert has this rank alone, nothing to reduce
    int expert;            // -1 for shared
    std::vector<at::Tensor> params;
  };
  std::vector<Bucket> buckets_;
  ProcessGroups& groups_;
  int64_t shared_bytes_ = 0, expert_bytes_ = 0;
};

}  // namespace demix::dist
