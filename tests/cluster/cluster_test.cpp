// Features, balanced k-means and the cluster router against closed forms and brute force.

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <random>
#include <set>

#include "demix/cluster/balanced_kmeans.h"
#include "demix/cluster/features.h"
#include "demix/cluster/router.h"
#include "demix/eval/routed_mixture.h"
#include "support/small_config.h"

namespace demix::cluster {
namespace {

std::vector<TermCounts> counts_of(const std::vector<std::vector<int64_t>>& docs) {
  std::vector<TermCounts> out;
  for (const auto& d : docs) out.push_back(TermCounts::of(d.data(), d.size()));
  return out;
}

// Documents drawn from `topics` disjoint token ranges of a `vocab`-token vocabulary, with noise.
std::vector<std::vector<int64_t>> topic_documents(int64_t n, int64_t topics, int64_t vocab,
                                                  uint64_t seed) {
  std::mt19937_64 rng(seed);
  const int64_t width = vocab / topics;
  std::vector<std::vector<int64_t>> docs;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t topic = i % topics;
    std::vector<int64_t> d;
    const int64_t length = 20 + int64_t(rng() % 30);
    for (int64_t t = 0; t < length; ++t)
      d.push_back(rng() % 10 == 0 ? int64_t(rng() % uint64_t(vocab))
                                  : topic * width + int64_t(rng() % uint64_t(width)));
    docs.push_back(d);
  }
  return docs;
}

TEST(FeaturesTest, TfIdfMatchesTheClosedForm) {
  // Two documents over 4 ids: idf = ln((1 + 2) / (1 + df)) + 1; id 3 occurs nowhere.
  const auto docs = counts_of({{0, 0, 1}, {1, 2}});
  const auto f = Featurizer::fit(docs, 4, 0, 1);
  const double idf_shared = std::log(3.0 / 3.0) + 1, idf_single = std::log(3.0 / 2.0) + 1;
  const auto idf = f.idf();
  EXPECT_NEAR(idf[0].item<double>(), idf_single, 1e-6);
  EXPECT_NEAR(idf[1].item<double>(), idf_shared, 1e-6);
  EXPECT_EQ(idf[3].item<double>(), 0.0);
  // doc 0: w_0 = (1 + ln 2) idf_single, w_1 = idf_shared, then L2-normalised
  const double w0 = (1 + std::log(2.0)) * idf_single, w1 = idf_shared;
  const double norm = std::sqrt(w0 * w0 + w1 * w1);
  const auto x = f.transform(docs);
  EXPECT_NEAR(x[0][0].item<double>(), w0 / norm, 1e-6);
  EXPECT_NEAR(x[0][1].item<double>(), w1 / norm, 1e-6);
  EXPECT_NEAR(x[0][2].item<double>(), 0.0, 1e-7);
  EXPECT_NEAR(x.norm(2, 1).sub(1).abs().max().item<double>(), 0.0, 1e-6);
}

TEST(FeaturesTest, SvdFeaturesAreUnitRowsInTheTopSingularSubspace) {
  const auto docs = counts_of(topic_documents(120, 4, 80, 7));
  const auto f = Featurizer::fit(docs, 80, 6, 3);
  ASSERT_TRUE(f.has_svd());
  const auto x = f.transform(docs);
  EXPECT_EQ(x.size(1), 6);
  EXPECT_LT(x.norm(2, 1).sub(1).abs().max().item<double>(), 1e-5);
  const auto c = f.components().to(at::kDouble);
  EXPECT_LT((c.mm(c.t()) - at::eye(6, at::kDouble)).abs().max().item<double>(), 1e-5);
}

TEST(FeaturesTest, RouterContextGivesTheFeaturesOfTheWholeText) {
  const auto docs = topic_documents(60, 3, 45, 11);
  for (const int64_t svd : {0, 5}) {
    const auto f = Featurizer::fit(counts_of(docs), 45, svd, 5);
    for (size_t i = 0; i < 3; ++i) {
      RouterContext context(f);
      context.add(docs[i].data(), docs[i].size());
      const auto expected = f.transform(counts_of({docs[i]}))[0].to(at::kDouble);
      const auto got = context.features();
      for (int64_t d = 0; d < f.dims(); ++d)
        EXPECT_NEAR(got[size_t(d)], expected[d].item<double>(), 1e-5) << "svd " << svd;
    }
  }
}

TEST(BalancedAssignmentTest, MatchesTheBruteForceOptimumWithExactSizes) {
  torch::manual_seed(5);
  for (int trial = 0; trial < 20; ++trial) {
    const int64_t n = 7, k = 3;
    const std::vector<int64_t> sizes{3, 2, 2};
    auto cost = at::rand({n, k}, at::kDouble);
    if (trial % 2) cost = cost.round();  // many ties
    const auto got = balanced_assignment(cost, sizes);
    std::vector<int64_t> held(3, 0);
    double total = 0;
    for (int64_t i = 0; i < n; ++i) {
      ++held[size_t(got[size_t(i)])];
      total += cost[i][got[size_t(i)]].item<double>();
    }
    EXPECT_EQ(held, sizes);
    double best = 1e9;
    for (int64_t code = 0; code < 2187; ++code) {  // every assignment of 7 points to 3 clusters
      std::vector<int64_t> h(3, 0);
      double c = 0;
      for (int64_t i = 0, rest = code; i < n; ++i, rest /= 3) {
        ++h[size_t(rest % 3)];
        c += cost[i][rest % 3].item<double>();
      }
      if (h == sizes) best = std::min(best, c);
    }
    EXPECT_NEAR(total, best, 1e-6) << "trial " << trial;
  }
}

TEST(WeightedAssignmentTest, LoadsNearTheirTargetsAndOptimalForThem) {
  torch::manual_seed(8);
  std::mt19937_64 rng(8);
  for (int trial = 0; trial < 20; ++trial) {
    const int64_t n = 7, k = 3;
    const auto cost = at::rand({n, k}, at::kDouble);
    std::vector<double> weights;
    for (int64_t i = 0; i < n; ++i) weights.push_back(double(1 + rng() % 5));
    const double total = std::accumulate(weights.begin(), weights.end(), 0.0);
    const auto got = weighted_balanced_assignment(cost, weights, std::vector<double>(3, total / 3));
    std::vector<double> load(3, 0.0);
    double got_cost = 0;
    for (int64_t i = 0; i < n; ++i) {
      load[size_t(got[size_t(i)])] += weights[size_t(i)];
      got_cost += cost[i][got[size_t(i)]].item<double>();
    }
    // the prices come from a finite iteration: a load can miss its target by more than one point
    for (auto l : load) EXPECT_LE(std::abs(l - total / 3), 2 * 5.0) << "trial " << trial;
    // An argmin under prices is the cheapest of all assignments with the same loads.
    double best = 1e9;
    for (int64_t code = 0; code < 2187; ++code) {
      std::vector<double> l(3, 0.0);
      double c = 0;
      for (int64_t i = 0, rest = code; i < n; ++i, rest /= 3) {
        l[size_t(rest % 3)] += weights[size_t(i)];
        c += cost[i][rest % 3].item<double>();
      }
      if (l == load) best = std::min(best, c);
    }
    EXPECT_NEAR(got_cost, best, 1e-9) << "trial " << trial;
  }
}

TEST(WeightedAssignmentTest, TokenLoadsOfManyDocumentsComeOutEqual) {
  torch::manual_seed(9);
  std::mt19937_64 rng(9);
  const int64_t n = 2000, k = 5;
  const auto cost = at::rand({n, k}, at::kDouble) + at::linspace(0, 1, k, at::kDouble);
  std::vector<double> weights;
  for (int64_t i = 0; i < n; ++i) weights.push_back(double(10 + rng() % 2000));
  const double total = std::accumulate(weights.begin(), weights.end(), 0.0);
  const auto got = weighted_balanced_assignment(cost, weights, std::vector<double>(5, total / 5));
  std::vector<double> load(5, 0.0);
  for (int64_t i = 0; i < n; ++i) load[size_t(got[size_t(i)])] += weights[size_t(i)];
  for (auto l : load) EXPECT_LE(std::abs(l - total / 5), 2010.0);
}

TEST(BalancedKMeansTest, SeparatedBlobsOfEqualSizeAreTheClusters) {
  torch::manual_seed(3);
  std::vector<at::Tensor> blobs;
  for (int64_t b = 0; b < 4; ++b) {
    auto centre = at::zeros({1, 3});
    centre[0][b % 3] = 10.0 * double(b + 1);
    blobs.push_back(centre + 0.1 * at::randn({25, 3}));
  }
  const auto a = balanced_kmeans(at::cat(blobs), 4, 30, 42);
  std::set<int64_t> seen;
  for (int64_t b = 0; b < 4; ++b) {
    for (int64_t i = 0; i < 25; ++i)
      EXPECT_EQ(a.labels[size_t(b * 25 + i)], a.labels[size_t(b * 25)]) << "blob " << b;
    seen.insert(a.labels[size_t(b * 25)]);
  }
  EXPECT_EQ(seen.size(), 4u);
}

TEST(BalancedKMeansTest, SizesAreWithinOneAndTheSeedFixesTheResult) {
  torch::manual_seed(4);
  const auto x = at::randn({103, 5});  // no structure: plain k-means would give uneven sizes
  const auto a = balanced_kmeans(x, 4, 30, 42);
  std::vector<int64_t> held(4, 0);
  for (auto l : a.labels) ++held[size_t(l)];
  std::sort(held.begin(), held.end());
  EXPECT_EQ(held, (std::vector<int64_t>{25, 26, 26, 26}));
  const auto again = balanced_kmeans(x, 4, 30, 42);
  EXPECT_EQ(again.labels, a.labels);
  EXPECT_TRUE(again.centres.equal(a.centres));
}

TEST(RouterTest, WeightsAreTheSoftmaxOfMinusSquaredDistancesOverTemperature) {
  // No SVD, 4 ids, three centres; features (0.6, 0.8, 0, 0):
  // d^2 = 0.8, 0.4, 2.0 -> weights exp(-d^2 / 0.1), normalised.
  const Featurizer f(at::ones({4}), at::Tensor());
  const auto centres = at::eye(4, at::kFloat).narrow(0, 0, 3);  // unit vectors e0, e1, e2
  const ClusterRouter router(f, centres, {"a", "b", "c"});
  const double features[4] = {0.6, 0.8, 0, 0};
  const auto w = router.weights(features, 0.1);
  const double e0 = std::exp(-8.0), e1 = std::exp(-4.0), e2 = std::exp(-20.0);
  EXPECT_NEAR(w[0], e0 / (e0 + e1 + e2), 1e-12);
  EXPECT_NEAR(w[1], e1 / (e0 + e1 + e2), 1e-12);
  EXPECT_NEAR(w[2], e2 / (e0 + e1 + e2), 1e-12);
  const auto top = top_k_weights(w, 2);
  EXPECT_NEAR(top[0], e0 / (e0 + e1), 1e-12);
  EXPECT_NEAR(top[1], e1 / (e0 + e1), 1e-12);
  EXPECT_EQ(top[2], 0.0);
}

// A router over `experts` random centres of a featurizer fitted on topic documents.
ClusterRouter topic_router(int64_t vocab, int64_t experts) {
  const auto docs = counts_of(topic_documents(90, experts, vocab, 3));
  auto f = Featurizer::fit(docs, vocab, 4, 9);
  const auto km = balanced_kmeans(f.transform(docs), experts, 20, 1);
  std::vector<std::string> names;
  for (int64_t j = 0; j < experts; ++j) names.push_back("e" + std::to_string(j));
  return ClusterRouter(f, km.centres, names);
}

TEST(RoutedMixtureTest, NoTokenReachesItsOwnWeights) {
  torch::manual_seed(6);
  const auto router = topic_router(40, 3);
  const int64_t B = 3, T = 16;
  const auto stream = at::randint(0, 40, {B * T + 1}, at::kLong);
  auto windows_of = [&](const at::Tensor& s) {
    return data::EvalWindows{s.narrow(0, 0, B * T).view({B, T}),
                             s.narrow(0, 1, B * T).view({B, T})};
  };
  eval::RouterOptions options;
  options.top_k = 2;
  options.every = 4;
  const auto base = eval::route_windows(router, windows_of(stream), options).view({B * T, 3});
  // Target index q (position q - 1 of the stream) is the first changed token: the weights of every
  // position scoring a target up to q must not move.
  bool later_moved = false;
  for (int64_t q = 1; q <= B * T; ++q) {
    auto changed = stream.clone();
    changed.narrow(0, q, B * T + 1 - q).copy_(at::randint(0, 40, {B * T + 1 - q}, at::kLong));
    const auto w = eval::route_windows(router, windows_of(changed), options).view({B * T, 3});
    EXPECT_TRUE(w.narrow(0, 0, q).equal(base.narrow(0, 0, q))) << "first changed target " << q;
    later_moved = later_moved || !w.equal(base);
  }
  EXPECT_TRUE(later_moved);  // the weights do read the text
}

TEST(RoutedMixtureTest, ScoreIsTheChosenExpertsMixtureOfAFullEvaluation) {
  auto config = test_support::small_config();
  torch::manual_seed(0);
  model::Gpt gpt(model::GptConfig::from(config));
  gpt->eval();
  const auto router = topic_router(40, 3);
  const int64_t B = 5, T = config.model.seq_len;
  const auto stream = at::randint(0, 40, {B * T + 1}, at::kLong);
  const data::EvalWindows windows{stream.narrow(0, 0, B * T).view({B, T}),
                                  stream.narrow(0, 1, B * T).view({B, T})};
  for (const int64_t top_k : {1, 2, 0}) {
    eval::RouterOptions options;
    options.top_k = top_k;
    options.every = 3;
    options.batch_size = 2;
    const auto got = eval::score_routed(eval::ExpertScorer(*gpt), router, windows, options);
    // every expert on every block, then the router's mixture
    const auto all = eval::expert_logprobs(*gpt, windows.inputs, windows.targets, {0, 1, 2});
    const auto log_w = eval::route_windows(router, windows, options);
    const double nll = -at::logsumexp(all + log_w, 2).sum().item<double>();
    EXPECT_NEAR(got.score.nll_sum, nll, 1e-6 * std::abs(nll)) << "top_k " << top_k;
    EXPECT_EQ(got.score.tokens, B * T);
    EXPECT_LE(got.experts_per_block, top_k == 0 ? 3.0 : double(top_k * 3));
  }
}

}  // namespace
}  // namespace demix::cluster
