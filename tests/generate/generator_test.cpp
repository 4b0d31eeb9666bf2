// Generation against independent references: the KV-cached forward against the full forward,
// greedy and mixed generation against recomputing every step from scratch with the posterior
// written out in closed form, and the sampling filters against hand-computed distributions.

#include "demix/generate/generator.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <set>

#include "demix/cluster/router.h"
#include "demix/model/kv_cache.h"
#include "support/small_config.h"

namespace demix::generate {
namespace {

model::GptConfig small(int64_t experts, int64_t domain_tokens = 0) {
  auto config = test_support::small_config();
  config.model.seq_len = 16;
  config.model.n_layer = 3;
  config.model.demix_layers = {0, 2};
  config.model.init_std = 0.2;  // peaked distributions, so that the experts disagree
  auto c = model::GptConfig::from(config);
  c.n_experts = experts;
  c.n_domain_tokens = domain_tokens;
  return c;
}

TEST(KvCacheTest, IncrementalLogitsEqualTheFullForward) {
  auto block_experts = small(3);
  block_experts.block_experts = true;  // expert_scope=block: each expert caches its own rows
  auto mode = small(0);
  mode.mode_blocks = 3;  // MoDE: the expert stacks' layers have caches of their own
  mode.mode_experts = 2;
  const std::vector<std::pair<std::string, model::GptConfig>> cases = {
      {"ff experts", small(3)},
      {"domain tokens", small(0, 3)},
      {"block experts", block_experts},
      {"MoDE", mode}};
  for (const auto& [label, config] : cases) {
    model::Gpt gpt(config, /*seed=*/5);
    gpt->eval();
    torch::NoGradGuard no_grad;
    torch::manual_seed(3);
    const auto tokens = torch::randint(0, 40, {3, 16}, torch::kLong);
    const model::Routing routing({2, 0, 1}, torch::kCPU);  // rows not grouped by expert
    const auto full = gpt->forward(tokens, routing);
    model::KvCache cache(gpt->context_length());
    std::vector<at::Tensor> parts = {gpt->forward(tokens.narrow(1, 0, 5), routing, cache)};
    for (int64_t t = 5; t < 16; ++t)
      parts.push_back(gpt->forward(tokens.narrow(1, t, 1), routing, cache));
    const auto cached = torch::cat(parts, 1);
    EXPECT_LT((cached - full).abs().max().item<double>(), 1e-5) << label;
    EXPECT_THROW(gpt->forward(tokens.narrow(1, 0, 1), routing, cache), c10::Error);  // full
  }
}

TEST(GeneratorTest, GreedyWithADomainEqualsRecomputingEveryStep) {
  model::Gpt gpt(small(3), /*seed=*/9);
  const std::vector<int64_t> prompt = {4, 17, 8};
  Sampler greedy({/*temperature=*/0.0});
  const auto generated = generate(*gpt, prompt, {/*domain=*/2}, 10, greedy).tokens;

  torch::NoGradGuard no_grad;
  auto sequence = prompt;
  for (int step = 0; step < 10; ++step) {
    const auto input = torch::tensor(sequence, torch::kLong).unsqueeze(0);
    const auto logits = gpt->forward(input, model::Routing({2}, torch::kCPU));
    sequence.push_back(logits[0][-1].argmax().item<int64_t>());
  }
  EXPECT_EQ(generated, std::vector<int64_t>(sequence.begin() + 3, sequence.end()));
}

// The mixture written out by hand: per-expert log-probs from full forwards, the prefix posterior
// as a normalised cumulative sum, the ensemble as a posterior-weighted sum of probabilities.
TEST(GeneratorTest, MixingFollowsTheDomainPosteriorOfTheTextSoFar) {
  const int64_t E = 3;
  model::Gpt gpt(small(E), /*seed=*/11);
  const std::vector<double> prior = {0.5, 0.3, 0.2};
  const std::vector<int64_t> prompt = {1, 2, 3, 5, 8};
  ExpertChoice mix{std::nullopt, torch::tensor(prior, torch::kDouble).log()};
  Sampler greedy({/*temperature=*/0.0});
  const auto out = generate(*gpt, prompt, mix, 8, greedy);
  ASSERT_EQ(out.tokens.size(), 8u);

  torch::NoGradGuard no_grad;
  auto sequence = prompt;
  sequence.insert(sequence.end(), out.tokens.begin(), out.tokens.end());
  const auto input = torch::tensor(sequence, torch::kLong).unsqueeze(0).expand({E, -1});
  const auto probs = torch::softmax(
      gpt->forward(input, model::Routing({0, 1, 2}, torch::kCPU)).to(torch::kDouble), -1);
  for (size_t step = 0; step < out.tokens.size(); ++step) {
    const int64_t t = int64_t(prompt.size() + step);  // predicting sequence[t]
    std::vector<double> weights(E);
    double total = 0;
    for (int64_t j = 0; j < E; ++j) {
      double likelihood = prior[size_t(j)];
      for (int64_t s = 1; s < t; ++s)
        likelihood *= probs[j][s - 1][sequence[size_t(s)]].item<double>();
      weights[size_t(j)] = likelihood;
      total += likelihood;
    }
    auto next = torch::zeros({40}, torch::kDouble);
    for (int64_t j = 0; j < E; ++j) {
      EXPECT_NEAR(out.posterior[step][size_t(j)], weights[size_t(j)] / total, 1e-5);  // fp32 model
      next += weights[size_t(j)] / total * probs[j][t - 1];
    }
    EXPECT_EQ(out.tokens[step], next.argmax().item<int64_t>()) << "step " << step;
  }
  // The text so far pulls the posterior away from the prior.
  double moved = 0;
  for (int64_t j = 0; j < E; ++j)
    moved += std::abs(out.posterior.back()[size_t(j)] - prior[size_t(j)]);
  EXPECT_GT(moved, 1e-3);
}

// The router's choice written out: every `every` tokens the top-k weights of the text so far,
// and each token the argmax of those experts' weighted probabilities from full forwards.
TEST(GeneratorTest, RoutedGenerationMixesTheRoutersChoiceOfTheTextSoFar) {
  const int64_t E = 3, V = 40;
  model::Gpt gpt(small(E), /*seed=*/13);
  // a router over token ids in three bands, so that the text moves its choice
  const cluster::Featurizer features(torch::ones({V}), torch::Tensor());
  auto centres = torch::zeros({E, V});
  for (int64_t j = 0; j < E; ++j) centres[j].narrow(0, j * 13, 13).fill_(0.25);
  const cluster::ClusterRouter router(features, centres, {"a", "b", "c"});
  const std::vector<int64_t> prompt = {1, 2, 30, 31, 32};
  for (const int64_t top_k : {1, 2}) {
    Sampler greedy({/*temperature=*/0.0});
    const RoutedChoice choice{&router, top_k, /*every=*/3, /*temperature=*/0.1};
    const auto out = generate_routed(*gpt, prompt, choice, 9, greedy);
    ASSERT_EQ(out.tokens.size(), 9u);

    torch::NoGradGuard no_grad;
    auto sequence = prompt;
    std::vector<double> weights;
    std::set<std::vector<double>> distinct;
    for (size_t step = 0; step < out.tokens.size(); ++step) {
      if (step % 3 == 0) {
        cluster::RouterContext context(router.featurizer());
        context.add(sequence.data(), sequence.size());
        const auto f = context.features();
        weights = cluster::top_k_weights(router.weights(f.data(), 0.1), top_k);
        distinct.insert(weights);
      }
      EXPECT_EQ(out.posterior[step], weights) << "step " << step;
      const auto input = torch::tensor(sequence, torch::kLong).unsqueeze(0).expand({E, -1});
      const auto probs = torch::softmax(
          gpt->forward(input, model::Routing({0, 1, 2}, torch::kCPU)).to(torch::kDouble), -1);
      auto next = torch::zeros({V}, torch::kDouble);
      for (int64_t j = 0; j < E; ++j) next += weights[size_t(j)] * probs[j][-1];
      EXPECT_EQ(out.tokens[step], next.argmax().item<int64_t>())
          << "top-" << top_k << " step " << step;
      sequence.push_back(out.tokens[step]);
    }
    if (top_k == 2)  // the weights move with the text, so a refresh that did not happen shows
      EXPECT_GT(distinct.size(), 1u) << "the weights never moved";
  }
}

TEST(GeneratorTest, StopsAtTheEndOfTheContext) {
  model::Gpt gpt(small(0), /*seed=*/1);
  Sampler sampler({/*temperature=*/1.0, 0, 1.0, /*seed=*/4});
  const auto out = generate(*gpt, std::vector<int64_t>(10, 3), {/*domain=*/0}, 100, sampler);
  EXPECT_EQ(out.tokens.size(), 6u);  // 16 positions, 10 taken by the prompt
}

TEST(SamplerTest, FiltersGiveTheHandComputedDistributions) {
  const auto log_probs = torch::tensor({0.1, 0.4, 0.05, 0.3, 0.15}, torch::kDouble).log();
  auto expect = [&](SamplingOptions options, std::vector<double> expected) {
    const auto got = sampling_distribution(log_probs, options);
    for (size_t i = 0; i < expected.size(); ++i)
      EXPECT_NEAR(got[int64_t(i)].item<double>(), expected[i], 1e-12) << "token " << i;
  };
  expect({0.0}, {0, 1, 0, 0, 0});                          // greedy
  expect({1.0, 2}, {0, 0.4 / 0.7, 0, 0.3 / 0.7, 0});       // top-k 2
  expect({1.0, 0, 0.7}, {0, 0.4 / 0.7, 0, 0.3 / 0.7, 0});  // 0.4 + 0.3 reach 0.7
  expect({1.0, 0, 0.75}, {0, 0.4 / 0.85, 0, 0.3 / 0.85, 0.15 / 0.85});
  const double z = 0.01 + 0.16 + 0.0025 + 0.09 + 0.0225;  // temperature 1/2 squares p
  expect({0.5}, {0.01 / z, 0.16 / z, 0.0025 / z, 0.09 / z, 0.0225 / z});
}

TEST(SamplerTest, DrawsFollowTheDistributionAndTheSeed) {
  const auto log_probs = torch::tensor({0.1, 0.4, 0.05, 0.3, 0.15}, torch::kDouble).log();
  Sampler a({1.0, 3, 1.0, /*seed=*/7}), b({1.0, 3, 1.0, /*seed=*/7});
  std::vector<int64_t> counts(5, 0);
  const int draws = 20000;
  for (int i = 0; i < draws; ++i) {
    const auto token = a.next(log_probs);
    ASSERT_EQ(token, b.next(log_probs)) << "same seed, different draw";
    ++counts[size_t(token)];
  }
  const std::vector<double> expected = {0, 0.4 / 0.85, 0, 0.3 / 0.85, 0.15 / 0.85};
  for (size_t i = 0; i < 5; ++i) EXPECT_NEAR(double(counts[i]) / draws, expected[i], 0.015) << i;
}

}  // namespace
}  // namespace demix::generate
