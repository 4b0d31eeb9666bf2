#include "demix/eval/domain_posterior.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

namespace demix::eval {
namespace {

// The reference: scalar loops in long double, normalising by the running maximum written out by
// hand, position by position (no cumsum, no log_softmax, no logsumexp).
struct Reference {
  std::vector<std::vector<std::vector<long double>>> posterior;  // [b][t][j]
  std::vector<std::vector<long double>> mixture;                 // [b][t]
};

Reference reference(const at::Tensor& lp, const std::vector<double>& prior, bool last_token) {
  const auto B = lp.size(0), T = lp.size(1), E = lp.size(2);
  auto a = lp.accessor<double, 3>();
  Reference r;
  for (int64_t b = 0; b < B; ++b) {
    r.posterior.emplace_back();
    r.mixture.emplace_back();
    std::vector<long double> evidence(E, 0.0L);
    for (int64_t t = 0; t < T; ++t) {
      if (t > 0)
        for (int64_t j = 0; j < E; ++j)
          evidence[j] = (last_token ? 0.0L : evidence[j]) + a[b][t - 1][j];
      std::vector<long double> joint(E);
      long double top = -INFINITY;
      for (int64_t j = 0; j < E; ++j) {
        joint[j] = std::log((long double)prior[j]) + evidence[j];
        top = std::max(top, joint[j]);
      }
      long double z = 0;
      for (int64_t j = 0; j < E; ++j) z += std::exp(joint[j] - top);
      std::vector<long double> post(E);
      long double mix = 0;
      for (int64_t j = 0; j < E; ++j) {
        post[j] = std::exp(joint[j] - top) / z;
        mix += post[j] * std::exp((long double)a[b][t][j]);
      }
      r.posterior.back().push_back(post);
      r.mixture.back().push_back(std::log(mix));
    }
  }
  return r;
}

at::Tensor synthetic_logprobs(int64_t B, int64_t T, int64_t E, double scale, uint64_t seed) {
  torch::manual_seed(seed);
  // log-probabilities of tokens: negative, varied per expert, sometimes very negative
  return -(torch::rand({B, T, E}, torch::kDouble) * scale + 0.01);
}

void expect_matches(const at::Tensor& lp, const std::vector<double>& prior, PosteriorKind kind) {
  const auto ref = reference(lp, prior, kind == PosteriorKind::kLastToken);
  const auto log_prior = torch::tensor(prior, torch::kDouble).log();
  const auto post = log_posterior(lp, log_prior, kind).exp();
  const auto mix = mixture_logprobs(lp, log_posterior(lp, log_prior, kind));
  ASSERT_TRUE(torch::isfinite(post).all().item<bool>());
  ASSERT_TRUE(torch::isfinite(mix).all().item<bool>());
  double worst_post = 0, worst_mix = 0;
  for (int64_t b = 0; b < lp.size(0); ++b)
    for (int64_t t = 0; t < lp.size(1); ++t) {
      for (int64_t j = 0; j < lp.size(2); ++j)
        worst_post = std::max(
            worst_post, std::abs(double(ref.posterior[b][t][j]) - post[b][t][j].item<double>()));
      worst_mix =
          std::max(worst_mix, std::abs(double(ref.mixture[b][t]) - mix[b][t].item<double>()));
    }
  EXPECT_LT(worst_post, 1e-9);
  EXPECT_LT(worst_mix, 1e-9);
}

TEST(DomainPosteriorTest, PrefixPosteriorAndMixtureMatchTheReference) {
  expect_matches(synthetic_logprobs(3, 17, 4, 8.0, 1), {0.1, 0.2, 0.3, 0.4},
                 PosteriorKind::kPrefix);
}

TEST(DomainPosteriorTest, LastTokenVariantMatchesTheReference) {
  expect_matches(synthetic_logprobs(2, 9, 3, 5.0, 2), {0.5, 0.25, 0.25}, PosteriorKind::kLastToken);
}

TEST(DomainPosteriorTest, LongBlocksWithVeryNegativeLogProbsStayFinite) {
  // 2048 tokens at up to -40 nats each: prefix sums reach -80000, far below exp's range.
  expect_matches(synthetic_logprobs(1, 2048, 3, 40.0, 3), {1.0 / 3, 1.0 / 3, 1.0 / 3},
                 PosteriorKind::kPrefix);
}

TEST(DomainPosteriorTest, FirstPositionIsThePrior) {
  const auto lp = synthetic_logprobs(2, 5, 3, 3.0, 4);
  const auto prior = torch::tensor({0.7, 0.2, 0.1}, torch::kDouble);
  const auto post = log_posterior(lp, prior.log(), PosteriorKind::kPrefix).exp();
  EXPECT_TRUE(torch::allclose(post[0][0], prior));
  EXPECT_TRUE(torch::allclose(post[1][0], prior));
}

TEST(DomainPosteriorTest, BlockPosteriorUsesEveryToken) {
  const auto lp = synthetic_logprobs(2, 6, 3, 3.0, 5);
  const auto prior = torch::tensor({0.3, 0.3, 0.4}, torch::kDouble).log();
  const auto block = log_block_posterior(lp, prior, PosteriorKind::kPrefix);
  const auto expected = torch::log_softmax(prior.unsqueeze(0) + lp.sum(1), -1);
  EXPECT_TRUE(torch::allclose(block, expected, 1e-12, 1e-12));
}

// pandas ewm(alpha, adjust=False) over the block posteriors in order: the first block's posterior,
// then alpha * posterior + (1 - alpha) * prior; rows of one update are blocks in order, so how the
// blocks are batched does not matter.
TEST(PriorTest, UpdatingPriorIsTheEwmOfTheBlockPosteriorsInOrder) {
  const std::vector<std::vector<double>> blocks = {
      {0.8, 0.1, 0.1}, {0.6, 0.3, 0.1}, {0.2, 0.5, 0.3}, {0.2, 0.5, 0.3}, {0, 0, 1}, {0, 1, 0}};
  std::vector<double> expected = blocks[0];
  for (size_t b = 1; b < blocks.size(); ++b)
    for (size_t j = 0; j < 3; ++j) expected[j] = 0.3 * blocks[b][j] + 0.7 * expected[j];
  auto as_log = [&](size_t first, size_t count) {
    std::vector<double> flat;
    for (size_t b = first; b < first + count; ++b)
      flat.insert(flat.end(), blocks[b].begin(), blocks[b].end());
    return torch::tensor(flat, torch::kDouble).view({int64_t(count), 3}).log();
  };
  for (size_t batch : {1, 2, 3, 6}) {
    auto prior = Prior::updating(3, 0.3);
    EXPECT_EQ(prior.probs(), std::vector<double>(3, 1.0 / 3));  // uniform before any block
    for (size_t first = 0; first < blocks.size(); first += batch)
      prior.update(as_log(first, batch));
    for (size_t j = 0; j < 3; ++j) EXPECT_NEAR(prior.probs()[j], expected[j], 1e-12) << batch;
  }
}

TEST(PriorTest, FixedAndUniformNeverMove) {
  auto fixed = Prior::fixed({2.0, 1.0, 1.0});
  EXPECT_DOUBLE_EQ(fixed.probs()[0], 0.5);
  fixed.update(torch::tensor({{0.0, -30.0, -30.0}}, torch::kDouble));
  EXPECT_DOUBLE_EQ(fixed.probs()[0], 0.5);
  auto uniform = Prior::uniform(4);
  uniform.update(torch::tensor({{0.0, -30.0, -30.0, -30.0}}, torch::kDouble));
  EXPECT_DOUBLE_EQ(uniform.probs()[3], 0.25);
}

TEST(PriorTest, TopKPicksTheLargestPriors) {
  EXPECT_EQ(top_k_experts({0.1, 0.4, 0.2, 0.3}, 2), (std::vector<int64_t>{1, 3}));
  EXPECT_EQ(top_k_experts({0.25, 0.25, 0.25, 0.25}, 3), (std::vector<int64_t>{0, 1, 2}));
  EXPECT_EQ(top_k_experts({0.1, 0.9}, 5), (std::vector<int64_t>{0, 1}));
}

}  // namespace
}  // namespace demix::eval
