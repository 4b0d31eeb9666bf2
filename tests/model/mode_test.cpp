// Modular Domain Experts, LoRA and block-scoped DEMix experts against independent references:
// the plain backbone (a dense Gpt with the same tensors), single-expert models, and dense models
// rebuilt from one expert's checkpoint file.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>

#include "demix/checkpoint/checkpoint.h"
#include "demix/checkpoint/mode_compose.h"
#include "demix/core/error.h"
#include "demix/core/manifest.h"
#include "demix/core/safetensors.h"
#include "demix/eval/mixture.h"
#include "demix/model/gpt.h"
#include "support/small_config.h"

namespace demix {
namespace {
namespace fs = std::filesystem;

Config dense_config() {
  auto c = test_support::small_config();
  c.model.ff = FeedForward::kDense;
  c.model.n_layer = 4;
  return c;
}

Config mode_config(const std::vector<std::string>& domains, int64_t stage) {
  auto c = dense_config();
  c.data.domains = domains;
  c.mode.blocks = 2;
  c.mode.stage = stage;
  c.mode.backbone = "backbone";  // not read by these tests
  c.mode.experts_from = "stage1";
  c.validate("test");
  return c;
}

// Copies every tensor of `from` whose name `to` also has.
void copy_shared_names(model::GptImpl& from, model::GptImpl& to) {
  torch::NoGradGuard no_grad;
  auto source = from.named_parameters();
  for (auto& item : to.named_parameters())
    if (auto* t = source.find(item.key())) item.value().copy_(*t);
}

std::pair<at::Tensor, at::Tensor> batch(int64_t rows, uint64_t seed) {
  torch::manual_seed(seed);
  auto tokens = torch::randint(0, 40, {rows, 9});
  return {tokens.narrow(1, 0, 8), tokens.narrow(1, 1, 8)};
}

at::Tensor logits(model::GptImpl& m, const at::Tensor& tokens) {
  torch::NoGradGuard no_grad;
  m.eval();
  return m.forward(tokens,
                   model::Routing(std::vector<int64_t>(size_t(tokens.size(0)), 0), torch::kCPU));
}

TEST(ModeTest, GateOnTheBackboneGivesExactlyTheBackbone) {
  model::Gpt backbone(model::GptConfig::from(dense_config()), 1);
  model::Gpt mode(model::GptConfig::from(mode_config({"alpha", "beta"}, 2)), 2);
  copy_shared_names(*backbone, *mode);
  const auto tokens = batch(3, 5).first;
  // Random experts and gates: the mixture is not the backbone...
  EXPECT_FALSE(torch::allclose(logits(*mode, tokens), logits(*backbone, tokens), 1e-3, 1e-3));
  {  // ...until every gate puts all its weight on the backbone: exp(-1e4) is exactly 0 in fp32.
    torch::NoGradGuard no_grad;
    for (auto& block : *mode->mode) {
      auto& gate = block->as<model::ModeBlock>()->gate;
      gate->weight.zero_();
      gate->bias.zero_();
      gate->bias[0] = 1e4;
    }
  }
  EXPECT_TRUE(torch::equal(logits(*mode, tokens), logits(*backbone, tokens)));
}

TEST(ModeTest, ZeroExpertsIsTheBackbone) {
  model::Gpt backbone(model::GptConfig::from(dense_config()), 1);
  auto c = model::GptConfig::from(dense_config());
  c.mode_blocks = 2;  // and mode_experts = 0
  model::Gpt mode(c, 7);
  EXPECT_EQ(mode->num_params(), backbone->num_params());  // no gate, no stack
  copy_shared_names(*backbone, *mode);
  const auto tokens = batch(2, 6).first;
  EXPECT_TRUE(torch::equal(logits(*mode, tokens), logits(*backbone, tokens)));
}

TEST(ModeTest, BackboneInitialisedExpertsStartAsTheBackbone) {
  model::Gpt backbone(model::GptConfig::from(dense_config()), 1);
  auto config = mode_config({"alpha"}, 1);
  config.mode.layers_per_expert = 2;  // as many as the block's backbone layers
  model::Gpt mode(model::GptConfig::from(config), 3);
  copy_shared_names(*backbone, *mode);
  checkpoint::init_experts_from_backbone(*mode);
  // Each expert stack is a copy of its block's layers: every branch gives the same output, and
  // any convex combination of equal outputs is that output (up to rounding).
  const auto tokens = batch(2, 8).first;
  EXPECT_TRUE(torch::allclose(logits(*mode, tokens), logits(*backbone, tokens), 1e-5, 1e-5));
}

TEST(ModeTest, WidenedGatesReproduceEachSingleExpertModelWhenTheOthersAreMasked) {
  const auto dir = fs::temp_directory_path() / ("demix_mode_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  const std::vector<std::string> domains = {"alpha", "beta"};
  model::Gpt backbone(model::GptConfig::from(dense_config()), 1);
  std::vector<model::Gpt> singles;
  for (size_t j = 0; j < domains.size(); ++j) {
    const auto config = mode_config({domains[j]}, 1);
    singles.emplace_back(model::GptConfig::from(config), 10 + j);
    copy_shared_names(*backbone, *singles.back());
    {
      torch::NoGradGuard no_grad;  // gates far from uniform, different per expert
      for (auto& block : *singles.back()->mode)
        block->as<model::ModeBlock>()->gate->bias.normal_(0.0, 2.0);
    }
    checkpoint::save_checkpoint((dir / "stage1" / domains[j]).string(), *singles.back(), nullptr,
                                config, {}, 1);
  }
  auto stage2 = mode_config(domains, 2);
  stage2.mode.experts_from = (dir / "stage1").string();
  model::Gpt composed(model::GptConfig::from(stage2), 99);
  checkpoint::compose_experts(stage2, *composed);

  const auto tokens = batch(3, 9).first;
  for (int64_t j = 0; j < 2; ++j) {
    composed->set_active_experts({j});
    EXPECT_TRUE(
        torch::allclose(logits(*composed, tokens), logits(*singles[size_t(j)], tokens), 1e-5, 1e-5))
        << domains[size_t(j)];
  }
  composed->set_active_experts({});  // both experts: neither single model
  EXPECT_FALSE(torch::allclose(logits(*composed, tokens), logits(*singles[0], tokens), 1e-4, 1e-4));
  fs::remove_all(dir);
}

TEST(ModeTest, CompositionRefusesExpertsOfDifferentBackbones) {
  const auto dir = fs::temp_directory_path() / ("demix_mode_bb_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  const std::vector<std::string> domains = {"alpha", "beta"};
  for (size_t j = 0; j < domains.size(); ++j) {
    const auto config = mode_config({domains[j]}, 1);
    model::Gpt single(model::GptConfig::from(config), 20 + j);  // different backbones
    checkpoint::save_checkpoint((dir / "stage1" / domains[j]).string(), *single, nullptr, config,
                                {}, 1);
  }
  auto stage2 = mode_config(domains, 2);
  stage2.mode.experts_from = (dir / "stage1").string();
  model::Gpt composed(model::GptConfig::from(stage2), 99);
  EXPECT_THROW(checkpoint::compose_experts(stage2, *composed), Error);
  fs::remove_all(dir);
}

// A stage-1 run whose shared.safetensors is another domain's (its manifest written again): the
// domain recorded in the file refuses it.
TEST(ModeTest, CompositionRefusesASwappedStage1File) {
  const auto dir = fs::temp_directory_path() / ("demix_mode_swap_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  const std::vector<std::string> domains = {"alpha", "beta"};
  std::vector<std::string> checkpoints;
  model::Gpt backbone(model::GptConfig::from(dense_config()), 1);
  for (size_t j = 0; j < domains.size(); ++j) {
    const auto config = mode_config({domains[j]}, 1);
    model::Gpt single(model::GptConfig::from(config), 30 + j);
    copy_shared_names(*backbone, *single);
    checkpoints.push_back(checkpoint::save_checkpoint((dir / "stage1" / domains[j]).string(),
                                                      *single, nullptr, config, {}, 1));
  }
  EXPECT_EQ(safetensors_metadata(checkpoints[1] + "/shared.safetensors").at("domains"), "beta");
  fs::copy_file(checkpoints[1] + "/shared.safetensors", checkpoints[0] + "/shared.safetensors",
                fs::copy_options::overwrite_existing);
  write_manifest(checkpoints[0]);
  auto stage2 = mode_config(domains, 2);
  stage2.mode.experts_from = (dir / "stage1").string();
  model::Gpt composed(model::GptConfig::from(stage2), 99);
  try {
    checkpoint::compose_experts(stage2, *composed);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tensors of domain 'beta'"), std::string::npos)
        << e.what();
  }
  fs::remove_all(dir);
}

TEST(LoraTest, StartsAsTheFrozenModelAndOnlyAdaptersGetGradients) {
  auto config = dense_config();
  model::Gpt base(model::GptConfig::from(config), 1);
  config.model.lora_rank = 2;
  model::Gpt lora(model::GptConfig::from(config), 2);
  copy_shared_names(*base, *lora);
  const auto [tokens, targets] = batch(2, 4);
  EXPECT_TRUE(torch::equal(logits(*lora, tokens), logits(*base, tokens)));  // B starts at zero
  lora->train();
  for (auto& item : lora->named_parameters())
    item.value().set_requires_grad(!model::is_backbone_param(item.key()));
  lora->loss(tokens, targets, model::Routing({0, 0}, torch::kCPU)).backward();
  int64_t adapters = 0;
  for (const auto& item : lora->named_parameters()) {
    const bool adapter = item.key().find("_lora.") != std::string::npos;
    adapters += adapter;
    EXPECT_EQ(item.value().grad().defined(), adapter) << item.key();
  }
  EXPECT_EQ(adapters, 4 * 4 * 2);  // 4 layers x (qkv, proj, fc1, fc2) x (A, B)
}

Config block_config() {
  auto c = test_support::small_config();
  c.model.expert_scope = ExpertScope::kBlock;
  c.validate("test");
  return c;
}

TEST(BlockExpertsTest, ADomainsSequenceReachesOnlyItsBlocksAndTheSharedParameters) {
  model::Gpt m(model::GptConfig::from(block_config()), 1);
  m->train();
  const auto [tokens, targets] = batch(2, 3);
  m->loss(tokens, targets, model::Routing({1, 1}, torch::kCPU)).backward();
  int64_t reached = 0;
  for (const auto& item : m->named_parameters()) {
    const auto expert = model::expert_of(item.key());
    const auto& grad = item.value().grad();
    const bool nonzero = grad.defined() && grad.abs().sum().item<double>() > 0;
    // the attention key bias's gradient is exactly zero (softmax is shift invariant)
    if (item.key().find("qkv.bias") != std::string::npos) continue;
    if (!expert || *expert == 1) {
      EXPECT_TRUE(nonzero) << item.key();
      reached += expert.has_value();
    } else {
      EXPECT_FALSE(grad.defined()) << item.key();
    }
  }
  EXPECT_EQ(reached, 2 * 11);  // 2 layers x (ln_1, ln_2: 4, qkv.weight, proj: 2, fc1, fc2: 4)
}

TEST(BlockExpertsTest, AnExpertFileWithTheSharedOneIsADenseModel) {
  const auto dir = fs::temp_directory_path() / ("demix_block_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  const auto config = block_config();
  model::Gpt m(model::GptConfig::from(config), 1);
  const auto checkpoint = checkpoint::save_checkpoint(dir.string(), *m, nullptr, config, {}, 1);
  // Round trip into a model of another seed.
  model::Gpt loaded(model::GptConfig::from(config), 2);
  checkpoint::load_model(checkpoint, *loaded);
  for (const auto& item : m->named_parameters())
    EXPECT_TRUE(torch::equal(item.value(), loaded->named_parameters()[item.key()])) << item.key();
  // The independent reference for expert e: a dense model whose tensors are shared.safetensors
  // and experts/<domain>.safetensors, by name, with no renaming.
  auto dense_cfg = config;
  dense_cfg.model.ff = FeedForward::kDense;
  dense_cfg.model.expert_scope = ExpertScope::kFf;
  const auto [tokens, targets] = batch(3, 11);
  torch::NoGradGuard no_grad;
  m->eval();
  const auto all = eval::expert_logprobs(*m, tokens, targets, {0, 1, 2});  // one batched forward
  for (int64_t e = 0; e < 3; ++e) {
    model::Gpt dense(model::GptConfig::from(dense_cfg), 3);
    auto tensors = load_safetensors(checkpoint + "/shared.safetensors");
    for (auto& [name, t] : load_safetensors(checkpoint + "/experts/" +
                                            config.data.domains[size_t(e)] + ".safetensors"))
      tensors[name] = t;
    auto params = dense->named_parameters();
    ASSERT_EQ(tensors.size(), params.size());
    for (auto& item : params) item.value().copy_(tensors.at(item.key()));
    dense->eval();
    const auto reference =
        dense->token_logprobs(tokens, targets, model::Routing({0, 0, 0}, torch::kCPU));
    EXPECT_TRUE(torch::allclose(all.select(2, e), reference.to(torch::kDouble), 1e-5, 1e-5)) << e;
  }
  fs::remove_all(dir);
}

TEST(BlockExpertsTest, WithExpertInvertsStripExpert) {
  EXPECT_EQ(model::strip_expert("blocks.3.experts.12.attn.qkv.weight"), "blocks.3.attn.qkv.weight");
  EXPECT_EQ(model::with_expert("blocks.3.attn.qkv.weight", 12, true),
            "blocks.3.experts.12.attn.qkv.weight");
  EXPECT_EQ(model::with_expert("blocks.3.ff.fc1.weight", 12), "blocks.3.ff.experts.12.fc1.weight");
}

}  // namespace
}  // namespace demix
