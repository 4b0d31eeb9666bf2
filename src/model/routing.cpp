#include "demix/model/routing.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <numeric>
#include <set>

#include "demix/core/device.h"

namespace demix::model {

Routing::Routing(const std::vector<int64_t>& domain_of_row, const at::Device& device)
    : domain_of_row_(domain_of_row) {
  const auto n = int64_t(domain_of_row.size());
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return domain_of_row[a] < domain_of_row[b]; });
  // Already grouped when each id forms one run of rows (in any id order).
  int64_t runs = 0;
  for (int64_t i = 0; i < n; ++i) runs += (i == 0 || domain_of_row[i] != domain_of_row[i - 1]);
  const std::set<int64_t> ids(domain_of_row.begin(), domain_of_row.end());
  const bool grouped = runs == int64_t(ids.size());
  std::vector<int64_t> walk = domain_of_row;
  if (!grouped)
    for (int64_t i = 0; i < n; ++i) walk[i] = domain_of_row[order[i]];
  for (int64_t i = 0; i < n; ++i) {
    if (groups_.empty() || groups_.back().expert != walk[i]) groups_.push_back({walk[i], 0});
    ++groups_.back().rows;
  }
  auto host = at::TensorOptions().dtype(at::kLong);
  domains_ = to_device(at::tensor(domain_of_row, host), device);
  if (!grouped) {
    order_ = to_device(at::tensor(order, host), device);
    inverse_ = at::empty_like(order_).scatter_(0, order_, at::arange(n, order_.options()));
  }
}

at::Tensor Routing::to_expert_order(const at::Tensor& x) const {
  return order_.defined() ? x.index_select(0, order_) : x;
}

at::Tensor Routing::from_expert_order(const at::Tensor& y) const {
  return inverse_.defined() ? y.index_select(0, inverse_) : y;
}

at::Tensor Routing::by_expert(const at::Tensor& x, const ExpertFn& f) const {
  if (groups_.size() == 1) return f(groups_[0].expert, x, 0);
  std::vector<int64_t> sizes;
  for (const auto& g : groups_) sizes.push_back(g.rows);
  const auto chunks = to_expert_order(x).split_with_sizes(sizes);
  std::vector<at::Tensor> outputs;
  int64_t first_row = 0;
  for (size_t i = 0; i < groups_.size(); ++i) {
    outputs.push_back(f(groups_[i].expert, chunks[i], first_row));
    first_row += groups_[i].rows;
  }
  return from_expert_order(at::cat(outputs));
}

}  // namespace demix::model
