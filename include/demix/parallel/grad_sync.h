#pragma once

// Gradient synchronisation for expert parallelism. Parameters are tagged once from their names
// (model::expert_of): shared ones are reduced over `world`, each expert's over its own group.
// Gradients are coalesced into flat buckets of at most `bucket_bytes`; all buckets are launched
// asynchronously, then waited on.
//
// Scale: every gradient becomes the sum over the ranks that hold the parameter. Each rank's loss
// is the sum of its rows' losses divided by the rows of the global batch (all ranks, all
// micro-batches), so the sum is exactly the gradient of the mean loss over the global batch, as
// one process computing the whole batch would get it, however unevenly the ranks draw rows (a
// subset in train.train_domains). An expert's rows live on its group alone, so its group's sum
// is complete. Experts that no rank trains are left out: their gradients stay undefined, and
// AdamW leaves them alone as it does in one process.

#include <ATen/core/Tensor.h>

#include <string>
#include <utility>
#include <vector>

#include "demix/parallel/process_groups.h"

namespace demix::parallel {

class GradSync {
 public:
  // With `overlap`, autograd hooks start each bucket's all-reduce as soon as its gradients are
  // final, while backward is still computing the rest.
  GradSync(const std::vector<std::pair<std::string, at::Tensor>>& named_params,
           ProcessGroups& groups, int64_t bucket_bytes, bool overlap,
           const std::vector<int>& untrained_experts = {});
  ~GradSync();
  GradSync(const GradSync&) = delete;
  GradSync& operator=(const GradSync&) = delete;

  // Before the backward of the step's last micro-batch: arms the overlap hooks.
  void prepare_for_backward();
  // After backward, before clipping and the optimizer step: launches what is left, waits for
  // every bucket and writes the reduced gradients back.
  void sync();

  // The global L2 norm of the whole model's gradient after sync(), identical on every rank:
  // shared parameters once, each expert once (not once per replica). A 0-dim tensor.
  at::Tensor global_norm();

  // Bytes all-reduced per step by this rank: shared, and expert.
  int64_t shared_bytes() const { return shared_bytes_; }
  int64_t expert_bytes() const { return expert_bytes_; }
  // Seconds the last sync() took: the communication not hidden behind backward.
  double last_sync_seconds() const { return last_sync_seconds_; }
  // Buckets of the last step whose all-reduce started during backward, and all buckets.
  size_t overlapped_buckets() const { return overlapped_; }
  size_t buckets() const { return buckets_.size(); }

 private:
  struct Bucket {
    c10d::Backend* group = nullptr;  // nullptr: the expert has this rank alone
    int expert = -1;                 // -1 for shared
    std::vector<at::Tensor> params;
    std::vector<at::Tensor> grads;  // final gradients captured by the hooks
    size_t ready = 0;
    at::Tensor flat;
    c10::intrusive_ptr<c10d::Work> work;
  };
  void on_grad(size_t bucket, size_t slot, const at::Tensor& grad);
  void launch(Bucket& bucket);
  void launch_in_order(bool force);  // buckets go out in index order, the same on every rank

  std::vector<Bucket> buckets_;
  std::vector<std::pair<at::Tensor, unsigned>> hooks_;
  ProcessGroups& groups_;
  bool overlap_;
  bool armed_ = false;
  size_t next_launch_ = 0;
  size_t overlapped_ = 0;
  int64_t shared_bytes_ = 0, expert_bytes_ = 0;
  double last_sync_seconds_ = 0;
};

}  // namespace demix::parallel
