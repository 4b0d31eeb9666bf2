#include "demix/dist/grad_sync.h"

#include <map>

#include "demix/model/gpt.h"

namespace demix::dist {

GradSync::GradSync(const std::vector<std::pair<std::string, at::Tensor>>& named_params,
                   ProcessGroups& groups, int64_t bucket_bytes)
    : groups_(groups) {
  std::map<int, std::vector<at::Tensor>> by_owner;  // -1: shared, else expert id
  for (const auto& [name, p] : named_params)
    by_owner[int(model::expert_of(name).value_or(-1))].push_back(p);
  for (auto& [owner, params] : by_owner) {
    c10d::Backend* group = owner < 0 ? &groups.world() : groups.expert(owner);
    Bucket bucket{group, owner, {}};
    int64_t bytes = 0;
    for (const auto& p : params) {
      const int64_t size = p.numel() * p.element_size();
      if (!bucket.params.empty() && bytes + size > bucket_bytes) {
        buckets_.push_back(bucket);
        bucket.params.clear();
        bytes = 0;
      }
      bucket.params.push_back(p);
      bytes += size;
      if (group) (owner < 0 ? shared_bytes_ : expert_bytes_) += size;
    }
    if (!bucket.params.empty()) buckets_.push_back(bucket);
  }
}

void GradSync::sync() {
  at::NoGradGuard no_grad;
  const double scale = 1.0 / double(groups_.world_size());
  std::vector<std::pair<at::Tensor, c10::intrusive_ptr<c10d::Work>>> pending;
  std::vector<const Bucket*> launched;
  for (const auto& bucket : buckets_) {
    std::vector<at::Tensor> grads;
    for (const auto& p : bucket.params) {
      if (!p.grad().defined()) p.mutable_grad() = at::zeros_like(p);  // every rank must join
      grads.push_back(p.grad().view(-1));
    }
    auto flat = at::cat(grads).mul_(scale);  // (sum over holders) / W, see the header
    if (!bucket.group) {
      pending.emplace_back(flat, nullptr);
    } else {
      std::vector<at::Tensor> tensors = {flat};
      pending.emplace_back(flat, bucket.group->allreduce(tensors));
    }
    launched.push_back(&bucket);
  }
  for (size_t i = 0; i < pending.size(); ++i) {
    if (pending[i].second) pending[i].second->wait();
    int64_t offset = 0;
    for (const auto& p : launched[i]->params) {
      const auto n = p.numel();
      p.mutable_grad().view(-1).copy_(pending[i].first.narrow(0, offset, n));
      offset += n;
    }
  }
}

at::Tensor GradSync::global_norm() {
  at::NoGradGuard no_grad;
  // Shared grads are identical on every rank: count them on rank 0 only. An expert's grads are
  // identical inside its group: count them on its leader only. Then sum over the world.
  const auto device = buckets_.empty() ? at::Device(at::kCPU) : buckets_[0].params[0].device();
  auto sum_sq = at::zeros({1}, at::TensorOptions(device).dtype(at::kFloat));
  const auto& placement = groups_.placement();
  for (const auto& bucket : buckets_) {
    const bool counts = bucket.expert < 0 ? groups_.rank() == 0
                                          : placement.leader_of(bucket.expert) == groups_.rank();
    if (!counts) continue;
    for (const auto& p : bucket.params)
      if (p.grad().defined()) sum_sq += p.grad().to(at::kFloat).pow(2).sum();  // see grad_norm()
  }
  std::vector<at::Tensor> tensors = {sum_sq};
  groups_.world().allreduce(tensors)->wait();
  return sum_sq.sqrt().squeeze();
}

}  // namespace demix::dist
