#include "demix/parallel/grad_sync.h"

#include <algorithm>
#include <chrono>
#include <map>

#include "demix/model/gpt.h"
#include "demix/optim/optimizer.h"

namespace demix::parallel {

GradSync::GradSync(const std::vector<std::pair<std::string, at::Tensor>>& named_params,
                   ProcessGroups& groups, int64_t bucket_bytes, bool overlap,
                   const std::vector<int>& untrained_experts)
    : groups_(groups), overlap_(overlap) {
  // Buckets fill in reverse registration order, roughly the order in which backward produces
  // gradients, so the first buckets are ready first. Every member of a group builds its buckets
  // in the same order, which is the order their all-reduces are launched in.
  std::map<int, size_t> open;  // owner (-1: shared, else expert id) -> its bucket being filled
  std::map<int, int64_t> open_bytes;
  for (auto it = named_params.rbegin(); it != named_params.rend(); ++it) {
    const auto& p = it->second;
    const int owner = int(model::expert_of(it->first).value_or(-1));
    if (std::find(untrained_experts.begin(), untrained_experts.end(), owner) !=
        untrained_experts.end())
      continue;
    const int64_t size = p.numel() * p.element_size();
    if (!open.count(owner) || open_bytes[owner] + size > bucket_bytes) {
      Bucket bucket;
      bucket.group = owner < 0 ? &groups.world() : groups.expert(owner);
      bucket.expert = owner;
      open[owner] = buckets_.size();
      open_bytes[owner] = 0;
      buckets_.push_back(std::move(bucket));
    }
    auto& bucket = buckets_[open[owner]];
    if (overlap_) {
      const size_t b = open[owner], slot = bucket.params.size();
      hooks_.push_back({p, p.register_hook([this, b, slot](const at::Tensor& grad) {
                          on_grad(b, slot, grad);
                        })});
    }
    bucket.params.push_back(p);
    open_bytes[owner] += size;
    if (bucket.group) (owner < 0 ? shared_bytes_ : expert_bytes_) += size;
  }
  for (auto& bucket : buckets_) bucket.grads.resize(bucket.params.size());
}

GradSync::~GradSync() {
  for (auto& [param, id] : hooks_) param.remove_hook(id);
}

void GradSync::prepare_for_backward() {
  armed_ = overlap_;
  next_launch_ = 0;
  for (auto& bucket : buckets_) {
    bucket.ready = 0;
    bucket.work.reset();
    bucket.flat = at::Tensor();
    for (auto& g : bucket.grads) g = at::Tensor();
  }
}

void GradSync::on_grad(size_t b, size_t slot, const at::Tensor& grad) {
  if (!armed_) return;
  auto& bucket = buckets_[b];
  // The incoming gradient of this backward, plus what earlier micro-batches accumulated.
  const auto& accumulated = bucket.params[slot].grad();
  bucket.grads[slot] = accumulated.defined() ? accumulated + grad : grad.clone();
  if (++bucket.ready == bucket.params.size()) launch_in_order(/*force=*/false);
}

void GradSync::launch(Bucket& bucket) {
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> flat_parts;
  for (size_t i = 0; i < bucket.params.size(); ++i) {
    auto& g = bucket.grads[i];
    if (!g.defined()) {  // not produced by hooks: the accumulated grad, or zeros (every rank joins)
      const auto& p = bucket.params[i];
      g = p.grad().defined() ? p.grad() : at::zeros_like(p);
    }
    flat_parts.push_back(g.reshape(-1));
  }
  bucket.flat = at::cat(flat_parts);  // the losses are scaled already: see the header
  if (bucket.group) {
    std::vector<at::Tensor> tensors = {bucket.flat};
    bucket.work = bucket.group->allreduce(tensors);
  }
}

void GradSync::launch_in_order(bool force) {
  while (next_launch_ < buckets_.size() &&
         (force || buckets_[next_launch_].ready == buckets_[next_launch_].params.size()))
    launch(buckets_[next_launch_++]);
}

void GradSync::sync() {
  at::NoGradGuard no_grad;
  const auto start = std::chrono::steady_clock::now();
  if (!armed_) prepare_for_backward();  // no overlap: everything is launched now
  armed_ = false;
  overlapped_ = next_launch_;
  launch_in_order(/*force=*/true);
  for (auto& bucket : buckets_) {
    if (bucket.work) bucket.work->wait();
    int64_t offset = 0;
    for (auto& p : bucket.params) {
      const auto n = p.numel();
      const auto reduced = bucket.flat.narrow(0, offset, n).view_as(p);
      if (p.grad().defined())
        p.mutable_grad().copy_(reduced);
      else
        p.mutable_grad() = reduced.clone();
      offset += n;
    }
  }
  last_sync_seconds_ =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

at::Tensor GradSync::global_norm() {
  at::NoGradGuard no_grad;
  // Shared grads are identical on every rank: count them on rank 0 only. An expert's grads are
  // identical inside its group: count them on its leader only. Then sum over the world.
  const auto device = buckets_.empty() ? at::Device(at::kCPU) : buckets_[0].params[0].device();
  std::vector<at::Tensor> counted;
  const auto& placement = groups_.placement();
  for (const auto& bucket : buckets_) {
    const bool counts = bucket.expert < 0 ? groups_.rank() == 0
                                          : placement.leader_of(bucket.expert) == groups_.rank();
    if (counts) counted.insert(counted.end(), bucket.params.begin(), bucket.params.end());
  }
  // A rank may count nothing; its zero must still live on the device the collective runs on.
  auto sum_sq = counted.empty() ? at::zeros({1}, at::TensorOptions(device).dtype(at::kFloat))
                                : optim::grad_sum_of_squares(counted).reshape({1});
  std::vector<at::Tensor> tensors = {sum_sq};
  groups_.world().allreduce(tensors)->wait();
  return sum_sq.sqrt().squeeze();
}

}  // namespace demix::parallel
