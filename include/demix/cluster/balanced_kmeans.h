#pragma once

// Balanced k-means (as in c-BTM): Lloyd iterations whose assignment step gives every cluster the
// same number of points (within one), solved as a min-cost transportation problem by an auction
// (Bertsekas 1988) with epsilon scaling, so the total squared distance is within n * eps of the
// best balanced assignment. Seeded and deterministic.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace demix::cluster {

// Squared Euclidean distances of rows of `x` (n, D) to `centres` (k, D): (n, k) float64.
at::Tensor squared_distances(const at::Tensor& x, const at::Tensor& centres);

// n points shared out among k clusters as evenly as possible: the first n % k get one more.
std::vector<int64_t> equal_sizes(int64_t n, int64_t k);

// The cluster of each point, cluster j receiving exactly sizes[j] points (the sizes sum to n),
// minimising the total of `cost` (n, k) float64 to within n * 1e-7 of its range.
std::vector<int64_t> balanced_assignment(const at::Tensor& cost, const std::vector<int64_t>& sizes);

// The cluster of each point when points weigh `weights` (> 0, e.g. their tokens) and cluster j
// should receive the weight `loads[j]` (summing to the total): point i goes to
// argmin_j cost_ij + w_i p_j, with prices per unit of weight found by Gauss-Seidel on the dual of
// the transportation problem (each cluster's price in turn set so that, the others' fixed, its
// load is its target). Loads come out within about one point's weight of their targets, and no
// assignment with the same loads costs less.
std::vector<int64_t> weighted_balanced_assignment(const at::Tensor& cost,
                                                  const std::vector<double>& weights,
                                                  const std::vector<double>& loads);

// The nearest centre of each row of `distances` (n, k) (ties: the lower index).
std::vector<int64_t> nearest(const at::Tensor& distances);

struct KMeans {
  at::Tensor centres;           // (k, D) float32
  std::vector<int64_t> labels;  // of the fitted points
  int64_t iterations = 0;       // run until the labels stopped changing, or the limit
};

// k-means++ seeding (seeded), then balanced Lloyd iterations on `x` (n, D) float32, n >= k: equal
// point counts, or, given `weights` (n), equal total weights.
KMeans balanced_kmeans(const at::Tensor& x, int64_t k, int64_t max_iterations, uint64_t seed,
                       const std::vector<double>& weights = {});

}  // namespace demix::cluster
