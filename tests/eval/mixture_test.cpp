#include "demix/eval/mixture.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>

#include "demix/core/error.h"
#include "support/mixture_reference.h"

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

// Random windows of token ids in [low, high).
data::EvalWindows windows_in(int64_t n, int64_t low, int64_t high, uint64_t seed) {
  torch::manual_seed(seed);
  auto tokens = torch::randint(low, high, {n, 13});
  return {tokens.narrow(1, 0, 12), tokens.narrow(1, 1, 12)};
}

data::EvalWindows concat(const data::EvalWindows& a, const data::EvalWindows& b) {
  return {torch::cat({a.inputs, b.inputs}), torch::cat({a.targets, b.targets})};
}

// Experts 1 and 2 each trained on their own kind of text (low or high token ids), so that the
// posterior moves decisively between them; expert 0 stays as initialised.
model::Gpt distinct_experts() {
  model::Gpt m(small(), 13);
  std::vector<at::Tensor> params;
  for (const auto& item : m->named_parameters()) params.push_back(item.value());
  torch::optim::Adam adam(params, torch::optim::AdamOptions(1e-2));
  const auto low = windows_in(8, 0, 32, 20), high = windows_in(8, 32, 64, 21);
  for (int i = 0; i < 30; ++i)
    for (const auto& [w, expert] : {std::pair{low, int64_t(1)}, std::pair{high, int64_t(2)}}) {
      adam.zero_grad();
      m->loss(w.inputs, w.targets, model::Routing(std::vector<int64_t>(8, expert), torch::kCPU))
          .backward();
      adam.step();
    }
  return m;
}

// The updating prior (and top-k re-chosen with it) against the float64 reference, for several
// batch sizes: each block is mixed with the prior as it stood before it, whatever the batching.
TEST(MixtureTest, UpdatingPriorAndTopKMatchAFloat64ReferenceForAnyBatchSize) {
  auto m = distinct_experts();
  // 3 blocks of low text, then 6 of high: the best expert changes inside a batch.
  const auto w = concat(windows_in(3, 0, 32, 11), windows_in(6, 32, 64, 12));
  const auto lp = reference::separate_expert_logprobs(*m, w, 3);
  const std::vector<double> uniform(3, 1.0 / 3), skewed = {0.5, 0.2, 0.3};
  struct Case {
    const char* name;
    std::vector<double> start;
    double alpha;
    int64_t top_k;
  };
  const std::vector<Case> cases = {{"updating", uniform, 0.3, 0},
                                   {"updating top-1", uniform, 0.3, 1},
                                   {"updating top-2", uniform, 0.3, 2},
                                   {"fixed top-2", skewed, 0, 2}};
  for (auto kind : {PosteriorKind::kPrefix, PosteriorKind::kLastToken}) {
    for (const auto& c : cases) {
      const auto expected = reference::reference_mixture(lp, c.start, c.alpha, size_t(c.top_k),
                                                         kind == PosteriorKind::kLastToken);
      for (int64_t batch : {1, 2, 4, 9}) {
        auto prior = c.alpha > 0 ? Prior::updating(3, c.alpha) : Prior::fixed(c.start);
        const auto got = score_mixture(*m, w, prior, {kind, c.top_k, batch});
        const auto where = std::string(c.name) + ", batch " + std::to_string(batch) +
                           (kind == PosteriorKind::kPrefix ? ", prefix" : ", last token");
        EXPECT_NEAR(got.score.nll_sum, expected.nll, 1e-6 * expected.nll) << where;
        for (size_t j = 0; j < 3; ++j)
          EXPECT_NEAR(got.final_prior[j], expected.final_prior[j], 1e-6) << where << " " << j;
      }
    }
  }
  // What the cases claim to cover: the updating prior re-chooses the top-2 inside the first batch.
  const auto top2 = reference::reference_mixture(lp, uniform, 0.3, 2);
  EXPECT_EQ(top2.chosen[0], (std::vector<size_t>{0, 1}));
  EXPECT_EQ(top2.chosen[1], (std::vector<size_t>{1, 2}));
  EXPECT_GT(top2.final_prior[2], 0.5);  // the high text's expert leads at the end
}

}  // namespace
}  // namespace demix::eval
