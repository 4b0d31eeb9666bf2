// The parameter-name classifier against hand-read names, and against the models' own structure:
// every parameter of every kind of model has a role, and the roles partition the parameters the
// way the module tree does (which module registered them), independently of the names.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <stdexcept>

#include "demix/model/gpt.h"

namespace demix::model {
namespace {

using Tensor = ParamRole::Tensor;

GptConfig small() {
  GptConfig c;
  c.vocab_size = 50;
  c.block_size = 8;
  c.d_model = 16;
  c.n_layer = 4;
  c.n_head = 2;
  c.d_ff = 32;
  return c;
}

TEST(ParamRolesTest, HandReadNames) {
  auto r = param_role("wte.weight");
  EXPECT_TRUE(r.embedding() && r.backbone() && !r.block && !r.expert && !r.norm());
  EXPECT_TRUE(param_role("domain_tokens.weight").embedding());
  r = param_role("ln_f.bias");
  EXPECT_TRUE(r.norm() && r.tensor == Tensor::kBias && !r.block && r.module == "ln_f");

  r = param_role("blocks.3.ff.experts.5.fc1.weight");
  EXPECT_EQ(r.block, 3);
  EXPECT_EQ(r.expert, 5);
  EXPECT_EQ(r.module, "ff.fc1");
  EXPECT_TRUE(r.feed_forward() && !r.residual_projection() && r.backbone());
  EXPECT_TRUE(param_role("blocks.3.ff.experts.5.fc2.weight").residual_projection());
  EXPECT_FALSE(param_role("blocks.3.ff.experts.5.fc2.bias").residual_projection());

  r = param_role("blocks.3.experts.12.ln_1.bias");
  EXPECT_EQ(r.expert, 12);
  EXPECT_EQ(r.module, "ln_1");
  EXPECT_TRUE(r.norm() && !r.feed_forward());
  EXPECT_TRUE(param_role("blocks.0.attn.proj.weight").residual_projection());
  EXPECT_FALSE(param_role("blocks.0.attn.qkv.weight").residual_projection());

  r = param_role("blocks.3.attn.qkv_lora.a");
  EXPECT_EQ(r.tensor, Tensor::kLoraA);
  EXPECT_EQ(r.module, "attn.qkv");
  EXPECT_TRUE(r.lora() && !r.backbone() && !r.residual_projection());
  EXPECT_EQ(param_role("blocks.3.ff.fc2_lora.b").tensor, Tensor::kLoraB);

  r = param_role("mode.1.gate.weight");
  EXPECT_TRUE(r.gate() && !r.backbone() && !r.stack);
  EXPECT_EQ(r.mode_block, 1);
  r = param_role("mode.1.stacks.2.0.ff.fc2.weight");
  EXPECT_EQ(r.mode_block, 1);
  EXPECT_EQ(r.stack, 2);
  EXPECT_EQ(r.module, "ff.fc2");
  EXPECT_TRUE(!r.gate() && !r.backbone() && r.feed_forward() && r.residual_projection());
}

TEST(ParamRolesTest, MalformedNamesAreRefused) {
  for (const char* name :
       {"wte", "blocks.x.attn.qkv.weight", "blocks.3.attn.qkv", "blocks.3.attn.qkv_lora.weight",
        "blocks.3.attn.qkv.a", "mode.1.stacks.2.ff.fc1.weight", "blocks.3.ff.experts.fc1.weight",
        ".weight"})
    EXPECT_THROW(param_role(name), std::invalid_argument) << name;
}

TEST(ParamRolesTest, NameHelpers) {
  EXPECT_EQ(with_stack("mode.1.stacks.0.2.attn.qkv.weight", 7),
            "mode.1.stacks.7.2.attn.qkv.weight");
  EXPECT_EQ(with_stack("mode.1.stacks.10.2.attn.qkv.weight", 3),
            "mode.1.stacks.3.2.attn.qkv.weight");
  EXPECT_THROW(with_stack("blocks.1.attn.qkv.weight", 3), std::invalid_argument);
  EXPECT_THROW(with_expert("wte.weight", 3), std::invalid_argument);
}

// Counts the parameters of `module`'s subtree (by the module tree, not by name).
int64_t count(const torch::nn::Module& module) { return int64_t(module.parameters().size()); }

TEST(ParamRolesTest, RolesFollowTheModuleTree) {
  // DEMix layers and a domain token: experts and blocks as registered.
  auto c = small();
  c.n_experts = 3;
  c.n_domain_tokens = 3;
  Gpt demix(c);
  int64_t expert_params = 0, residual = 0, embeddings = 0;
  for (const auto& item : demix->named_parameters()) {
    const auto role = param_role(item.key());
    expert_params += role.expert.has_value();
    residual += role.residual_projection();
    embeddings += role.embedding();
    if (role.block) EXPECT_LT(*role.block, c.n_layer) << item.key();
    EXPECT_EQ(role.expert, expert_of(item.key())) << item.key();
  }
  int64_t expected_experts = 0;
  for (const auto& block : *demix->blocks)
    for (const auto& child : block->named_children())
      if (child.key() == "ff")
        for (const auto& expert : child.value()->named_children())
          if (expert.key() == "experts") expected_experts += count(*expert.value());
  EXPECT_EQ(expert_params, expected_experts);
  EXPECT_EQ(residual, c.n_layer * (1 + c.n_experts));  // attn.proj + each expert's fc2
  EXPECT_EQ(embeddings, count(*demix->wte) + count(*demix->wpe) + 1);

  // LoRA: the adapters are exactly the Lora modules' parameters; the rest is the backbone.
  auto l = small();
  l.lora_rank = 4;
  Gpt lora(l);
  int64_t adapters = 0, backbone = 0;
  for (const auto& item : lora->named_parameters()) {
    const auto role = param_role(item.key());
    adapters += role.lora();
    backbone += role.backbone();
  }
  int64_t lora_modules = 0;
  for (const auto& m : lora->modules(/*include_self=*/false))
    if (m->as<LoraImpl>()) lora_modules += count(*m);
  EXPECT_GT(lora_modules, 0);
  EXPECT_EQ(adapters, lora_modules);
  EXPECT_EQ(backbone, int64_t(Gpt(small())->parameters().size()));

  // MoDE: gates and stacks are what `mode` holds; the backbone is the dense model's.
  auto m = small();
  m.mode_blocks = 2;
  m.mode_experts = 3;
  m.mode_layers_per_expert = 1;
  Gpt mode(m);
  int64_t gates = 0, stacks = 0, in_backbone = 0;
  for (const auto& item : mode->named_parameters()) {
    const auto role = param_role(item.key());
    gates += role.gate();
    stacks += role.stack.has_value();
    in_backbone += role.backbone();
    if (role.stack) EXPECT_LT(*role.stack, m.mode_experts) << item.key();
  }
  EXPECT_EQ(gates + stacks, count(*mode->mode));
  EXPECT_EQ(gates, 2 * m.mode_blocks);  // a weight and a bias each
  EXPECT_EQ(in_backbone, int64_t(Gpt(small())->parameters().size()));
}

}  // namespace
}  // namespace demix::model
