// MoDE training on the bundled corpus: a dense backbone, stage 1 (one single-expert model per
// domain), stage 2 (composition), checked against the backbone's own tensors and, for the
// `branches` placement, against data parallelism and a single process on the same batch.

#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <filesystem>

#include "demix/checkpoint/checkpoint.h"
#include "demix/checkpoint/mode_compose.h"
#include "demix/core/safetensors.h"
#include "demix/recipes/mode_stage1.h"
#include "demix/train/trainer.h"
#include "support/gloo_ranks.h"

namespace demix {
namespace {
namespace fs = std::filesystem;
using test_support::Params;

// ctest runs each test in a process of its own, in parallel: one directory per process
const fs::path kRoot = fs::temp_directory_path() / ("demix_mode_" + std::to_string(::getpid()));
const std::vector<std::string> kTargets = {"python_docs", "manpages"};

Config tiny(const std::vector<std::string>& overrides) {
  std::vector<std::string> all = {
      "model.ff=dense", "model.n_layer=2", "model.seq_len=64", "train.steps=3",
      "train.eval_tokens=256", "train.log_every=1", "optim.warmup_steps=1",
      // see expert_parallel_test: a larger eps keeps Adam from amplifying rounding noise
      "optim.eps=1e-4"};
  all.insert(all.end(), overrides.begin(), overrides.end());
  return load_config("configs/tiny.yaml", all);
}

Config stage2(const std::string& out, int64_t k, const std::string& train,
              const std::string& placement = "data_parallel") {
  return tiny({"data.domains=[python_docs, manpages]", "mode.blocks=2", "mode.stage=2",
               "mode.experts_from=" + (kRoot / "stage1").string(), "mode.train=" + train,
               "mode.placement=" + placement, "data.sequences_per_domain=" + std::to_string(k),
               "train.out_dir=" + out});
}

Params tensors_of(const std::string& run) {
  return load_safetensors(checkpoint::resolve_checkpoint(run) + "/shared.safetensors");
}

class ModeTrainingTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {  // a backbone and the stage-1 experts, shared by the tests
    fs::remove_all(kRoot);
    train::Trainer(tiny({"data.domains=[scripture, humour, dictionary]",
                         "train.out_dir=" + (kRoot / "backbone").string()}))
        .run();
    recipes::run_mode_stage1(tiny({"data.domains=[python_docs, manpages]", "mode.blocks=2",
                                   "mode.stage=1", "mode.backbone=" + (kRoot / "backbone").string(),
                                   "train.out_dir=" + (kRoot / "stage1").string()}),
                             "", nullptr);
  }
  static void TearDownTestSuite() { fs::remove_all(kRoot); }
};

TEST_F(ModeTrainingTest, StageOneChangesOnlyItsExpertAndGates) {
  const auto backbone = tensors_of((kRoot / "backbone").string());
  for (const auto& domain : kTargets) {
    const auto run = (kRoot / "stage1" / domain).string();
    EXPECT_EQ(checkpoint::checkpoint_state(checkpoint::resolve_checkpoint(run)).step, 3);
    int64_t frozen = 0, trained = 0;
    for (const auto& [name, t] : tensors_of(run)) {
      if (model::is_backbone_param(name)) {
        ASSERT_TRUE(backbone.count(name)) << name;
        EXPECT_TRUE(torch::equal(t, backbone.at(name))) << domain << " " << name;
        ++frozen;
      } else if (name.find(".stacks.") != std::string::npos) {
        // mode.<b>.stacks.0.0.<rest> started as blocks.<b>.<rest> (one layer per block) and moved
        const auto at = name.find(".stacks.0.0.");
        const auto source = "blocks." + name.substr(5, at - 5) + "." + name.substr(at + 12);
        ASSERT_TRUE(backbone.count(source)) << source;
        trained += !torch::equal(t, backbone.at(source));
      }
    }
    EXPECT_EQ(frozen, int64_t(backbone.size()));
    EXPECT_EQ(trained, 2 * 12);  // 2 blocks x 12 tensors of a layer
  }
}

TEST_F(ModeTrainingTest, GatesOnlyLeavesBackboneAndExpertsBitIdentical) {
  const auto out = (kRoot / "gates_only").string();
  const auto config = stage2(out, 1, "gates");
  model::Gpt composed(model::GptConfig::from(config), 5);
  checkpoint::compose_experts(config, *composed);
  train::Trainer trainer(config);
  trainer.run();
  int64_t gates_moved = 0;
  for (const auto& [name, t] : tensors_of(out)) {
    const auto& before = composed->named_parameters()[name];
    if (name.find(".gate.") != std::string::npos)
      gates_moved += !torch::equal(t, before);
    else
      EXPECT_TRUE(torch::equal(t, before)) << name;
  }
  EXPECT_EQ(gates_moved, 4);  // 2 blocks x (weight, bias)
}

TEST_F(ModeTrainingTest, BranchesPlacementEqualsDataParallelAndOneProcess) {
  // The same global batch three ways: one process drawing k=2 per domain, data parallelism over
  // 2 ranks drawing k=1 each, and 3 ranks (backbone, expert 0, expert 1) all on the k=2 batch.
  train::Trainer single(stage2((kRoot / "single").string(), 2, "gates_experts"));
  for (int s = 0; s < 3; ++s) single.train_step();
  const auto reference = test_support::snapshot(single);
  const auto data_parallel = test_support::run_ranks(
      2, stage2((kRoot / "dp").string(), 1, "gates_experts"), 3, "", /*checkpoint=*/true);
  const auto branches = test_support::run_ranks(
      3, stage2((kRoot / "branches").string(), 2, "gates_experts", "branches"), 3, "",
      /*checkpoint=*/true);  // the checkpoint gathers every expert on every rank
  int64_t moved = 0;
  for (const auto& [name, value] : reference) {
    moved += !model::is_backbone_param(name);
    for (size_t r = 0; r < data_parallel.size(); ++r)
      EXPECT_LE(test_support::relative_difference(data_parallel[r].at(name), value), 1e-5)
          << "data parallel rank " << r << " " << name;
    for (size_t r = 0; r < branches.size(); ++r)
      EXPECT_LE(test_support::relative_difference(branches[r].at(name), value), 1e-5)
          << "branches rank " << r << " " << name;
  }
  EXPECT_GT(moved, 0);
  // gates and experts trained, the backbone did not
  const auto backbone = tensors_of((kRoot / "backbone").string());
  for (const auto& [name, value] : reference)
    if (model::is_backbone_param(name)) EXPECT_TRUE(torch::equal(value, backbone.at(name))) << name;
  // the trained expert moved away from the stage-1 expert the composition started from
  const auto start = tensors_of((kRoot / "stage1" / "python_docs").string());
  EXPECT_GT(test_support::relative_difference(reference.at("mode.0.stacks.0.0.ff.fc1.weight"),
                                              start.at("mode.0.stacks.0.0.ff.fc1.weight")),
            1e-6);
}

}  // namespace
}  // namespace demix
