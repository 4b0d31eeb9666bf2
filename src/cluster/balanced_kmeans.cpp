#include "demix/cluster/balanced_kmeans.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <set>

#include "demix/core/error.h"

namespace demix::cluster {

at::Tensor squared_distances(const at::Tensor& x, const at::Tensor& centres) {
  const auto xd = x.to(at::kDouble), cd = centres.to(at::kDouble);
  const auto d = xd.pow(2).sum(1, true) - 2 * xd.mm(cd.t()) + cd.pow(2).sum(1).unsqueeze(0);
  return d.clamp_min(0).contiguous();
}

std::vector<int64_t> equal_sizes(int64_t n, int64_t k) {
  std::vector<int64_t> sizes(size_t(k), n / k);
  for (int64_t j = 0; j < n % k; ++j) ++sizes[size_t(j)];
  return sizes;
}

std::vector<int64_t> nearest(const at::Tensor& distances) {
  const auto idx = distances.argmin(1).contiguous();  // the first minimum: the lower index
  return {idx.data_ptr<int64_t>(), idx.data_ptr<int64_t>() + idx.numel()};
}

namespace {

// One auction over the slots of every cluster (sizes[j] identical slots for cluster j). Persons
// (points) bid for the cheapest slot of the cluster that is best for them at current prices,
// raising its price by their margin over the next best option plus eps; an outbid holder bids
// again. Prices carry over between calls, as epsilon scaling needs.
class Auction {
 public:
  Auction(const double* cost, int64_t n, const std::vector<int64_t>& sizes)
      : cost_(cost), n_(n), k_(int64_t(sizes.size())), slots_(sizes.size()), owner_(size_t(n)) {
    int64_t id = 0;
    for (size_t j = 0; j < sizes.size(); ++j)
      for (int64_t s = 0; s < sizes[j]; ++s) slots_[j].insert({0.0, id++});
    holder_.assign(size_t(id), -1);
  }

  void run(double eps) {
    std::fill(holder_.begin(), holder_.end(), -1);
    std::fill(owner_.begin(), owner_.end(), Slot{-1, -1});
    std::vector<int64_t> unassigned(static_cast<size_t>(n_));
    for (int64_t i = 0; i < n_; ++i) unassigned[size_t(i)] = n_ - 1 - i;  // point 0 bids first
    while (!unassigned.empty()) {
      const auto i = unassigned.back();
      unassigned.pop_back();
      const auto evicted = bid(i, eps);
      if (evicted >= 0) unassigned.push_back(evicted);
    }
  }

  std::vector<int64_t> clusters() const {
    std::vector<int64_t> out(static_cast<size_t>(n_));
    for (int64_t i = 0; i < n_; ++i) out[size_t(i)] = owner_[size_t(i)].cluster;
    return out;
  }

 private:
  struct Slot {
    int64_t cluster, id;
  };
  using Prices = std::set<std::pair<double, int64_t>>;  // (price, slot id) of one cluster

  // Point i takes the cheapest slot of its best cluster; returns the point it evicted, or -1.
  int64_t bid(int64_t i, double eps) {
    const double inf = std::numeric_limits<double>::infinity();
    double best = -inf, second = -inf;
    int64_t best_j = -1;
    for (int64_t j = 0; j < k_; ++j) {
      const auto& prices = slots_[size_t(j)];
      if (prices.empty()) continue;
      const double value = -cost_[i * k_ + j] - prices.begin()->first;
      if (value > best) {
        second = best;
        best = value;
        best_j = j;
      } else if (value > second) {
        second = value;
      }
    }
    auto& prices = slots_[size_t(best_j)];
    if (prices.size() > 1)  // the same cluster's next cheapest slot is also an option
      second = std::max(second, -cost_[i * k_ + best_j] - std::next(prices.begin())->first);
    if (second == -inf) second = best;
    const auto [price, slot] = *prices.begin();
    prices.erase(prices.begin());
    prices.insert({price + (best - second) + eps, slot});
    const auto evicted = holder_[size_t(slot)];
    holder_[size_t(slot)] = i;
    owner_[size_t(i)] = {best_j, slot};
    if (evicted >= 0) owner_[size_t(evicted)] = {-1, -1};
    return evicted;
  }

  const double* cost_;
  int64_t n_, k_;
  std::vector<Prices> slots_;
  std::vector<int64_t> holder_;  // point holding each slot, or -1
  std::vector<Slot> owner_;      // slot held by each point
};

}  // namespace

std::vector<int64_t> balanced_assignment(const at::Tensor& cost,
                                         const std::vector<int64_t>& sizes) {
  const auto c = cost.to(at::kDouble).contiguous();
  const auto n = c.size(0), k = c.size(1);
  int64_t total = 0;
  for (auto s : sizes) total += s;
  if (int64_t(sizes.size()) != k || total != n)
    throw Error("balanced_assignment: sizes for " + std::to_string(sizes.size()) +
                " clusters summing to " + std::to_string(total) + ", expected " +
                std::to_string(k) + " summing to " + std::to_string(n));
  if (n == 0) return {};
  const double range = (c.max() - c.min()).item<double>();
  const double final_eps = std::max(range, 1e-30) * 1e-7;
  Auction auction(c.data_ptr<double>(), n, sizes);
  // Epsilon scaling: coarse rounds set the prices quickly, the last one fixes the optimality gap.
  for (double eps = std::max(range, 1e-30) / 4;; eps /= 8) {
    auction.run(std::max(eps, final_eps));
    if (eps <= final_eps) break;
  }
  return auction.clusters();
}

std::vector<int64_t> weighted_balanced_assignment(const at::Tensor& cost,
                                                  const std::vector<double>& weights,
                                                  const std::vector<double>& loads) {
  constexpr int64_t kSweeps = 50;
  const auto c = cost.to(at::kDouble).contiguous();
  const auto n = c.size(0), k = c.size(1);
  for (auto w : weights)
    if (!(w > 0)) throw Error("weighted_balanced_assignment: weights must be > 0");
  if (int64_t(weights.size()) != n || int64_t(loads.size()) != k)
    throw Error("weighted_balanced_assignment: " + std::to_string(weights.size()) +
                " weights and " + std::to_string(loads.size()) + " loads for a cost of " +
                std::to_string(n) + "x" + std::to_string(k));
  const auto* d = c.data_ptr<double>();
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<double> price(size_t(k), 0.0), margin(static_cast<size_t>(n));
  std::vector<int64_t> order(static_cast<size_t>(n));
  double largest = 0;
  for (auto w : weights) largest = std::max(largest, w);
  for (int64_t sweep = 0; sweep < kSweeps; ++sweep) {
    double worst = 0;  // the largest miss of a target before its price moved
    for (int64_t j = 0; j < k; ++j) {
      // Point i costs d_ij + w_i p_j in cluster j (p_j: a price per unit of weight), so it
      // prefers j while p_j < margin_i = (min over other clusters of that cost - d_ij) / w_i.
      for (int64_t i = 0; i < n; ++i) {
        const double w = weights[size_t(i)];
        double other = inf;
        for (int64_t l = 0; l < k; ++l)
          if (l != j) other = std::min(other, d[i * k + l] + w * price[size_t(l)]);
        margin[size_t(i)] = (other - d[i * k + j]) / w;
      }
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(),
                       [&](int64_t a, int64_t b) { return margin[size_t(a)] > margin[size_t(b)]; });
      // Take points by decreasing margin while that brings the load closer to its target.
      double load = 0, before = 0;
      size_t taken = 0;
      for (; taken < order.size(); ++taken) {
        const double w = weights[size_t(order[taken])];
        if (std::abs(load + w - loads[size_t(j)]) > std::abs(load - loads[size_t(j)])) break;
        load += w;
      }
      for (int64_t i = 0; i < n; ++i)
        if (margin[size_t(i)] > price[size_t(j)]) before += weights[size_t(i)];
      worst = std::max(worst, std::abs(before - loads[size_t(j)]));
      const double upper = taken > 0 ? margin[size_t(order[taken - 1])] : inf;
      const double lower = taken < order.size() ? margin[size_t(order[taken])] : -inf;
      price[size_t(j)] = std::isinf(upper)   ? lower + 1
                         : std::isinf(lower) ? upper - 1
                                             : (upper + lower) / 2;
    }
    if (worst <= largest) break;  // every load already within one point of its target
  }
  std::vector<int64_t> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    int64_t best = 0;
    for (int64_t j = 1; j < k; ++j)
      if (d[i * k + j] + weights[size_t(i)] * price[size_t(j)] <
          d[i * k + best] + weights[size_t(i)] * price[size_t(best)])
        best = j;
    out[size_t(i)] = best;
  }
  return out;
}

namespace {

// k-means++: the first centre uniformly, each next one with probability proportional to the
// squared distance to the nearest centre chosen so far.
at::Tensor plus_plus_centres(const at::Tensor& x, int64_t k, std::mt19937_64& rng) {
  const auto n = x.size(0);
  std::vector<int64_t> chosen{int64_t(std::uniform_int_distribution<int64_t>(0, n - 1)(rng))};
  auto closest = squared_distances(x, x.narrow(0, chosen[0], 1)).squeeze(1).contiguous();
  while (int64_t(chosen.size()) < k) {
    const auto* d = closest.data_ptr<double>();
    const double total = closest.sum().item<double>();
    int64_t pick = 0;
    if (total > 0) {
      double r = std::uniform_real_distribution<double>(0, total)(rng);
      for (pick = 0; pick < n - 1 && (r -= d[pick]) > 0;) ++pick;
    } else {  // every point sits on a centre: take the next unchosen one
      while (std::find(chosen.begin(), chosen.end(), pick) != chosen.end()) ++pick;
    }
    chosen.push_back(pick);
    closest =
        at::minimum(closest, squared_distances(x, x.narrow(0, pick, 1)).squeeze(1)).contiguous();
  }
  return x.index_select(0, at::tensor(chosen, at::kLong)).clone();
}

}  // namespace

KMeans balanced_kmeans(const at::Tensor& x, int64_t k, int64_t max_iterations, uint64_t seed,
                       const std::vector<double>& weights) {
  const auto n = x.size(0);
  if (n < k)
    throw Error("balanced k-means: " + std::to_string(n) + " points for k=" + std::to_string(k) +
                " clusters");
  std::mt19937_64 rng(seed);
  KMeans out;
  out.centres = plus_plus_centres(x, k, rng);
  const auto sizes = equal_sizes(n, k);
  double total = 0;
  for (auto w : weights) total += w;
  const std::vector<double> loads(size_t(k), total / double(k));
  for (out.iterations = 1; out.iterations <= max_iterations; ++out.iterations) {
    const auto cost = squared_distances(x, out.centres);
    auto labels = weights.empty() ? balanced_assignment(cost, sizes)
                                  : weighted_balanced_assignment(cost, weights, loads);
    const bool settled = labels == out.labels;
    out.labels = std::move(labels);
    if (settled) break;
    const auto index = at::tensor(out.labels, at::kLong);
    auto sums = at::zeros({k, x.size(1)}, at::kDouble).index_add_(0, index, x.to(at::kDouble));
    const auto counts =
        at::zeros({k}, at::kDouble)
            .index_add_(0, index,
                        at::ones({n}, at::kDouble));  // a cluster left empty keeps its centre
    out.centres = at::where(counts.unsqueeze(1) > 0, sums / counts.clamp_min(1).unsqueeze(1),
                            out.centres.to(at::kDouble))
                      .to(at::kFloat);
  }
  out.iterations = std::min(out.iterations, max_iterations);
  return out;
}

}  // namespace demix::cluster
