#include "demix/train/checkpoint.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>

#include "demix/core/error.h"
#include "demix/train/optimizer.h"
#include "support/small_config.h"

namespace demix::train {
namespace {

using test_support::small_config;

std::vector<std::pair<std::string, at::Tensor>> named(model::GptImpl& m) {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& item : m.named_parameters()) out.emplace_back(item.key(), item.value());
  return out;
}

TEST(CheckpointTest, SaveLoadIsBitExact) {
  const auto run = (std::filesystem::temp_directory_path() / "demix_ckpt_test").string();
  std::filesystem::remove_all(run);
  const auto config = small_config();
  model::Gpt a(model::GptConfig::from(config), 1);
  AdamW opt_a(named(*a), config.optim);
  torch::manual_seed(0);
  const auto x = torch::randint(0, 40, {3, 8}), y = torch::randint(0, 40, {3, 8});
  a->loss(x, y, model::Routing({0, 1, 2}, torch::kCPU)).backward();
  opt_a.step(1e-2);
  const auto dir = save_checkpoint(run, *a, &opt_a, config, {1, 42}, 2);

  EXPECT_TRUE(std::filesystem::exists(dir + "/experts/beta.safetensors"));
  EXPECT_EQ(resolve_checkpoint(run), dir);
  model::Gpt b(model::GptConfig::from(config), /*seed=*/999);
  AdamW opt_b(named(*b), config.optim);
  load_model(dir, *b);
  load_optimizer(dir, opt_b);
  const auto pb = b->named_parameters();
  for (const auto& item : a->named_parameters())
    EXPECT_TRUE(torch::equal(item.value(), pb[item.key()])) << item.key();
  const auto sa = opt_a.state(), sb = opt_b.state();
  for (const auto& [k, v] : sa) EXPECT_TRUE(torch::equal(v, sb.at(k))) << k;
  EXPECT_EQ(checkpoint_state(dir).step, 1);
  EXPECT_EQ(checkpoint_state(dir).data_cursor, 42u);
  EXPECT_EQ(to_yaml(checkpoint_config(dir)), to_yaml(config));
}

TEST(CheckpointTest, ExpertFilesHoldOnlyTheirExpert) {
  const auto run = (std::filesystem::temp_directory_path() / "demix_ckpt_split").string();
  std::filesystem::remove_all(run);
  const auto config = small_config();
  model::Gpt m(model::GptConfig::from(config), 2);
  const auto dir = save_checkpoint(run, *m, nullptr, config, {}, 1);
  const auto gamma = load_safetensors(dir + "/experts/gamma.safetensors");
  EXPECT_EQ(gamma.size(), 2u * 4u);  // 2 layers x fc1/fc2 weight+bias
  EXPECT_TRUE(torch::equal(gamma.at("blocks.1.ff.fc2.bias"),
                           m->named_parameters()["blocks.1.ff.experts.2.fc2.bias"]));
  const auto shared = load_safetensors(dir + "/shared.safetensors");
  for (const auto& [name, t] : shared) EXPECT_EQ(name.find("experts"), std::string::npos) << name;
  EXPECT_TRUE(shared.count("wte.weight"));
}

TEST(CheckpointTest, KeepsTheNewestN) {
  const auto run = (std::filesystem::temp_directory_path() / "demix_ckpt_keep").string();
  std::filesystem::remove_all(run);
  const auto config = small_config();
  model::Gpt m(model::GptConfig::from(config), 2);
  for (int64_t step : {1, 2, 3}) save_checkpoint(run, *m, nullptr, config, {step, 0}, 2);
  EXPECT_FALSE(std::filesystem::exists(run + "/checkpoints/step_00000001"));
  EXPECT_TRUE(std::filesystem::exists(run + "/checkpoints/step_00000002"));
  EXPECT_EQ(checkpoint_state(resolve_checkpoint(run)).step, 3);
}

TEST(CheckpointTest, CorruptFileIsAClearError) {
  const auto run = (std::filesystem::temp_directory_path() / "demix_ckpt_corrupt").string();
  std::filesystem::remove_all(run);
  const auto config = small_config();
  model::Gpt m(model::GptConfig::from(config), 2);
  const auto dir = save_checkpoint(run, *m, nullptr, config, {}, 1);
  std::filesystem::resize_file(dir + "/shared.safetensors", 100);
  try {
    load_model(dir, *m);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("shared.safetensors"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace demix::train
