#include <gtest/gtest.h>
#include <torch/torch.h>

#include "demix/model/gpt.h"

namespace demix::model {
namespace {

GptConfig small(int64_t experts) {
  GptConfig c;
  c.vocab_size = 50;
  c.block_size = 8;
  c.d_model = 16;
  c.n_layer = 2;
  c.n_head = 2;
  c.d_ff = 32;
  c.n_experts = experts;
  return c;
}

torch::Tensor tokens(int64_t rows, int64_t seed) {
  torch::manual_seed(seed);
  return torch::randint(0, 50, {rows, 8}, torch::kLong);
}

TEST(DemixRoutingTest, SequenceOfDomainDTouchesOnlyExpertD) {
  for (int64_t d = 0; d < 3; ++d) {
    Gpt model(small(3), /*seed=*/7);
    const auto x = tokens(2, 1 + d), y = tokens(2, 11 + d);
    model->loss(x, y, Routing({d, d}, torch::kCPU)).backward();
    for (const auto& item : model->named_parameters()) {
      const auto& grad = item.value().grad();
      const auto expert = expert_of(item.key());
      const bool touched = grad.defined() && grad.abs().sum().item<double>() > 0;
      if (!expert) {
        EXPECT_TRUE(touched) << "shared parameter without gradient: " << item.key();
      } else if (*expert == d) {
        EXPECT_TRUE(touched) << item.key();
      } else {
        EXPECT_FALSE(touched) << "expert " << *expert << " got a gradient from domain " << d << ": "
                              << item.key();
      }
    }
  }
}

TEST(DemixRoutingTest, MixedBatchEqualsPerRowForwards) {
  Gpt model(small(4), /*seed=*/3);
  model->eval();
  const auto x = tokens(5, 42);
  const std::vector<int64_t> domains = {3, 0, 3, 1, 0};  // not grouped: forces the permutation
  const auto together = model->forward(x, Routing(domains, torch::kCPU));
  for (int64_t b = 0; b < 5; ++b) {
    const auto alone = model->forward(x.narrow(0, b, 1), Routing({domains[b]}, torch::kCPU));
    EXPECT_TRUE(torch::allclose(together[b], alone[0], 1e-5, 1e-5)) << "row " << b;
  }
}

TEST(DemixRoutingTest, ExpertsDifferAndDenseLayersAreShared) {
  auto c = small(2);
  c.demix_layers = {1};  // block 0 keeps a dense FF
  Gpt model(c, /*seed=*/5);
  const auto params = model->named_parameters();
  EXPECT_TRUE(params.contains("blocks.0.ff.fc1.weight"));
  EXPECT_TRUE(params.contains("blocks.1.ff.experts.0.fc1.weight"));
  EXPECT_TRUE(params.contains("blocks.1.ff.experts.1.fc2.bias"));
  EXPECT_FALSE(params.contains("blocks.0.ff.experts.0.fc1.weight"));
  EXPECT_FALSE(torch::equal(params["blocks.1.ff.experts.0.fc1.weight"],
                            params["blocks.1.ff.experts.1.fc1.weight"]));
  const auto x = tokens(1, 9);
  EXPECT_FALSE(torch::allclose(model->forward(x, Routing({0}, torch::kCPU)),
                               model->forward(x, Routing({1}, torch::kCPU))));
}

TEST(DemixRoutingTest, InitDoesNotDependOnWhichExpertsAreHosted) {
  auto all = small(4);
  auto some = small(4);
  some.local_experts = {2};
  Gpt a(all, 11), b(some, 11);
  const auto pa = a->named_parameters();
  for (const auto& item : b->named_parameters())
    EXPECT_TRUE(torch::equal(item.value(), pa[item.key()])) << item.key();
  EXPECT_FALSE(b->named_parameters().contains("blocks.0.ff.experts.0.fc1.weight"));
}

TEST(DemixRoutingTest, ExpertNameHelpers) {
  EXPECT_EQ(expert_of("blocks.3.ff.experts.5.fc1.weight"), 5);
  EXPECT_FALSE(expert_of("blocks.3.ff.fc1.weight").has_value());
  EXPECT_EQ(strip_expert("blocks.3.ff.experts.12.fc1.weight"), "blocks.3.ff.fc1.weight");
  EXPECT_EQ(with_expert("blocks.3.ff.fc1.weight", 12), "blocks.3.ff.experts.12.fc1.weight");
}

TEST(DemixRoutingTest, DomainTokenIsPrependedAndIgnoredByTheLoss) {
  auto c = small(0);
  c.n_domain_tokens = 3;
  Gpt model(c, 1);
  const auto x = tokens(2, 3);
  const auto logits = model->forward(x, Routing({0, 2}, torch::kCPU));
  EXPECT_EQ(logits.sizes(), (std::vector<int64_t>{2, 8, 50}));
  EXPECT_EQ(model->wpe->weight.size(0), 9);  // one extra position for the domain token
  const auto other = model->forward(x, Routing({1, 2}, torch::kCPU));
  EXPECT_FALSE(torch::allclose(logits[0], other[0]));  // the token conditions row 0
  EXPECT_TRUE(torch::allclose(logits[1], other[1], 1e-6, 1e-6));
}

}  // namespace
}  // namespace demix::model
