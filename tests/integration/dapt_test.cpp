// Adaptation on the bundled corpus: a small DEMix model trained for a few steps, then
// DEMix-DAPT on a novel domain.

#include "demix/adapt/dapt.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>

#include "demix/core/config.h"
#include "demix/data/corpus.h"
#include "demix/eval/perplexity.h"
#include "demix/train/trainer.h"

namespace demix {
namespace {
namespace fs = std::filesystem;

std::vector<std::string> common(const std::string& out) {
  return {"model.n_layer=2", "model.seq_len=64", "train.eval_tokens=1024", "optim.warmup_steps=1",
          "train.out_dir=" + out};
}

TEST(DaptTest, DemixDaptTrainsOnlyTheNewExpertAndForgetsNothing) {
  const auto base_dir = (fs::temp_directory_path() / "demix_dapt_base").string();
  const auto dapt_dir = (fs::temp_directory_path() / "demix_dapt_run").string();
  fs::remove_all(base_dir);
  fs::remove_all(dapt_dir);
  auto base_overrides = common(base_dir);
  base_overrides.push_back("train.steps=4");
  train::Trainer base(load_config("configs/tiny.yaml", base_overrides));
  base.run();

  auto dapt_overrides = common(dapt_dir);
  dapt_overrides.insert(dapt_overrides.end(),
                        {"train.steps=3", "adapt.base=" + base_dir, "adapt.domain=glossary",
                         "data.sequences_per_domain=3"});
  const auto run = adapt::prepare_adaptation(load_config("configs/tiny.yaml", dapt_overrides));
  EXPECT_EQ(run.data.domains.back(), "glossary");
  EXPECT_EQ(run.train.trainable, "experts");
  EXPECT_EQ(run.data.sequences_per_domain, 3);  // the adaptation's batch, not the base model's
  train::Trainer dapt(run);
  dapt.run();

  // Shared parameters and old experts are bit-identical to the base model; the new expert moved
  // away from its initialisation.
  const auto before = base.model().named_parameters();
  const auto glossary = int64_t(run.data.domains.size()) - 1;
  model::Gpt init(model::GptConfig::from(run));
  train::load_model(run.train.init_from, *init);
  int64_t moved = 0;
  for (const auto& item : dapt.model().named_parameters()) {
    if (model::expert_of(item.key()) == glossary) {
      moved += !torch::equal(item.value(), init->named_parameters()[item.key()]);
      continue;
    }
    EXPECT_TRUE(torch::equal(item.value(), before[item.key()])) << item.key() << " changed";
  }
  EXPECT_GT(moved, 0);
  // Known-domain perplexity of every old domain is exactly unchanged.
  for (size_t d = 0; d + 1 < run.data.domains.size(); ++d) {
    const auto file = data::open_split(run, run.data.domains[d], "valid");
    EXPECT_EQ(eval::score_split(dapt.model(), *file, int64_t(d), 2048, 8).nll_sum,
              eval::score_split(base.model(), *file, int64_t(d), 2048, 8).nll_sum)
        << run.data.domains[d];
  }
}

}  // namespace
}  // namespace demix
