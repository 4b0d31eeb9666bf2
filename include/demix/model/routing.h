#pragma once

// Document-level routing (DEMix paper, sec. 2.2): every sequence goes, as a whole, to the expert of
// its known domain. A Routing is built once per batch on the host, from the row domains the data
// loader already knows, and shared by every DEMix layer, so no layer syncs with the device.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <vector>

namespace demix::model {

struct ExpertGroup {
  int64_t expert;
  int64_t rows;  // consecutive rows of the expert-sorted batch
};

class Routing {
 public:
  // domain_of_row[b]: expert/domain id of row b. Rows are grouped by id (a stable sort);
  // when the batch is already grouped, as the DomainBatcher makes it, no copy is made.
  Routing(const std::vector<int64_t>& domain_of_row, const at::Device& device);

  const std::vector<ExpertGroup>& groups() const { return groups_; }
  const std::vector<int64_t>& domain_of_row() const { return domain_of_row_; }
  const at::Tensor& domains() const { return domains_; }  // (B) int64 on the device

  at::Tensor to_expert_order(const at::Tensor& x) const;    // rows grouped by expert
  at::Tensor from_expert_order(const at::Tensor& y) const;  // back to batch order

  // Runs f(expert, rows, first_row) once per expert on its rows (first_row: where they start in
  // expert order) and returns the outputs in batch order: how a DEMix layer runs its experts.
  using ExpertFn = std::function<at::Tensor(int64_t, const at::Tensor&, int64_t)>;
  at::Tensor by_expert(const at::Tensor& x, const ExpertFn& f) const;

 private:
  std::vector<int64_t> domain_of_row_;
  std::vector<ExpertGroup> groups_;
  at::Tensor domains_;
  at::Tensor order_;    // undefined when rows are already grouped
  at::Tensor inverse_;  // inverse permutation of order_
};

}  // namespace demix::model
