#include "demix/eval/mixture.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>

#include "demix/core/error.h"

namespace demix::eval {
namespace {

model::GptConfig small() {
  model::GptConfig c;
  c.vocab_size = 64;
  c.block_size = 12;
  c.d_model = 16;
  c.n_layer = 2;
  c.n_head = 2;
  c.d_ff = 32;
  c.n_experts = 3;
  return c;
}

data::EvalWindows windows(int64_t n, uint64_t seed) {
  torch::manual_seed(seed);
  auto tokens = torch::randint(0, 64, {n, 13});
  return {tokens.narrow(1, 0, 12), tokens.narrow(1, 1, 12)};
}

// The known-domain score of `w` through expert `route` (perplexity.h's path, no mixing).
double top1_nll(model::GptImpl& m, const data::EvalWindows& w, int64_t route) {
  torch::NoGradGuard no_grad;
  m.eval();
  return -m.token_logprobs(
               w.inputs, w.targets,
               model::Routing(std::vector<int64_t>(size_t(w.inputs.size(0)), route), torch::kCPU))
              .to(torch::kDouble)
              .sum()
              .item<double>();
}

TEST(MixtureTest, BatchedExpertPathsEqualSeparateForwards) {
  model::Gpt m(small(), 1);
  m->eval();
  const auto w = windows(4, 2);
  torch::NoGradGuard no_grad;
  const auto all = expert_logprobs(*m, w.inputs, w.targets, {0, 1, 2});  // (B, T, E)
  for (int64_t e = 0; e < 3; ++e) {
    const auto alone =
        m->token_logprobs(w.inputs, w.targets, model::Routing({e, e, e, e}, torch::kCPU));
    EXPECT_TRUE(torch::allclose(all.select(2, e), alone.to(torch::kDouble), 1e-5, 1e-5)) << e;
  }
}

TEST(MixtureTest, IdenticalExpertsGiveTheOneExpertPerplexity) {
  model::Gpt m(small(), 3);
  {
    torch::NoGradGuard no_grad;
    auto params = m->named_parameters();
    for (const auto& item : params) {
      const auto e = model::expert_of(item.key());
      if (e && *e > 0)
        item.value().copy_(params[model::with_expert(model::strip_expert(item.key()), 0)]);
    }
  }
  const auto w = windows(6, 4);
  const double expected = top1_nll(*m, w, 0);
  for (auto kind : {PosteriorKind::kPrefix, PosteriorKind::kLastToken}) {
    for (auto prior : {Prior::uniform(3), Prior::updating(3, 0.3), Prior::fixed({0.6, 0.3, 0.1})}) {
      const auto score = score_mixture(*m, w, prior, {kind, 0, 4});
      EXPECT_NEAR(score.score.nll_sum, expected, 1e-6 * std::abs(expected));
      EXPECT_EQ(score.score.tokens, 6 * 12);
    }
  }
}

TEST(MixtureTest, OneHotPriorEqualsKnownDomainEvaluation) {
  model::Gpt m(small(), 5);
  const auto w = windows(5, 6);
  for (int64_t d = 0; d < 3; ++d) {
    std::vector<double> one_hot(3, 0.0);
    one_hot[size_t(d)] = 1.0;
    auto prior = Prior::fixed(one_hot);
    const auto score = score_mixture(*m, w, prior, {PosteriorKind::kPrefix, 0, 2});
    const double expected = top1_nll(*m, w, d);
    EXPECT_NEAR(score.score.nll_sum, expected, 1e-6 * expected) << d;
    EXPECT_NEAR(score.mean_block_posterior[size_t(d)], 1.0, 1e-12);
  }
}

TEST(MixtureTest, TopKWithAllExpertsIsFullMixing) {
  model::Gpt m(small(), 7);
  const auto w = windows(5, 8);
  auto full_prior = Prior::fixed({0.5, 0.2, 0.3});
  auto topk_prior = Prior::fixed({0.5, 0.2, 0.3});
  const auto full = score_mixture(*m, w, full_prior, {PosteriorKind::kPrefix, 0, 4});
  const auto topk = score_mixture(*m, w, topk_prior, {PosteriorKind::kPrefix, 3, 4});
  EXPECT_EQ(full.score.nll_sum, topk.score.nll_sum);
  auto top1_prior = Prior::fixed({0.1, 0.2, 0.7});  // top-1 picks expert 2, renormalised to 1
  const auto top1 = score_mixture(*m, w, top1_prior, {PosteriorKind::kPrefix, 1, 4});
  EXPECT_NEAR(top1.score.nll_sum, top1_nll(*m, w, 2), 1e-6 * top1.score.nll_sum);
  EXPECT_NE(top1.score.nll_sum, full.score.nll_sum);
}

TEST(MixtureTest, CachedPriorFavoursTheExpertThatFitsAndRoundTripsThroughAFile) {
  model::Gpt m(small(), 9);
  {  // make expert 1 much better on these windows by training it alone for a few steps
    const auto w = windows(8, 10);
    std::vector<at::Tensor> params;
    for (const auto& item : m->named_parameters()) params.push_back(item.value());
    torch::optim::Adam adam(params, torch::optim::AdamOptions(1e-2));
    for (int i = 0; i < 30; ++i) {
      adam.zero_grad();
      m->loss(w.inputs, w.targets, model::Routing(std::vector<int64_t>(8, 1), torch::kCPU))
          .backward();
      adam.step();
    }
    auto prior = estimate_prior(*m, w, 8, 0.3, {PosteriorKind::kPrefix, 0, 4});
    EXPECT_GT(prior.probs()[1], 0.5);
    const auto path = (std::filesystem::temp_directory_path() / "demix_prior.json").string();
    write_prior(path, prior, {"a", "b", "c"}, "test", 8);
    const auto again = read_prior(path, {"a", "b", "c"});
    for (size_t j = 0; j < 3; ++j) EXPECT_EQ(again.probs()[j], prior.probs()[j]);
    EXPECT_THROW(read_prior(path, {"a", "c", "b"}), Error);
  }
}

}  // namespace
}  // namespace demix::eval
