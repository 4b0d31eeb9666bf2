// Adaptation on the bundled corpus: a small DEMix model trained for a few steps, then
// DEMix-DAPT on a novel domain.

#include "demix/recipes/dapt.h"

#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <numeric>

#include "demix/core/config.h"
#include "demix/core/json.h"
#include "demix/data/corpus.h"
#include "demix/eval/perplexity.h"
#include "demix/train/trainer.h"
#include "support/tensor_compare.h"

namespace demix {
namespace {
namespace fs = std::filesystem;

std::vector<std::string> common(const std::string& out) {
  return {"model.n_layer=2", "model.seq_len=64", "train.eval_tokens=1024", "optim.warmup_steps=1",
          "train.out_dir=" + out};
}

using ExpertParams = std::map<std::pair<int64_t, std::string>, at::Tensor>;

// Every expert parameter of a checkpoint, by (expert, name without the expert's index).
ExpertParams expert_params(const std::string& checkpoint) {
  const auto config = checkpoint::checkpoint_config(checkpoint::resolve_checkpoint(checkpoint));
  model::Gpt model(model::GptConfig::from(config));
  checkpoint::load_model(checkpoint::resolve_checkpoint(checkpoint), *model);
  ExpertParams out;
  for (const auto& item : model->named_parameters())
    if (const auto e = model::expert_of(item.key()))
      out[{*e, model::strip_expert(item.key())}] = item.value().detach().clone();
  return out;
}

// The cached prior prepare_adaptation wrote.
std::vector<double> written_prior(const std::string& run_dir) {
  const auto path = (fs::path(run_dir) / "prior.json").string();
  return read_json_file(path, "prior file").at("prior").get<std::vector<double>>();
}

// A small DEMix model trained for 4 steps, shared by the initialisation tests.
class DaptInitTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // ctest runs each test as its own process, two at a time: each trains a base of its own.
    base_dir_ = (fs::temp_directory_path() / ("demix_dapt_init_base." + std::to_string(::getpid())))
                    .string();
    fs::remove_all(base_dir_);
    auto overrides = common(base_dir_);
    overrides.push_back("train.steps=4");
    train::Trainer(load_config("configs/tiny.yaml", overrides)).run();
  }

  // prepare_adaptation with adapt.init=`init`; returns the new expert's id, `prior` the cached
  // prior over the old experts.
  static int64_t prepare(const std::string& init, const std::string& run_dir,
                         std::vector<double>& prior) {
    fs::remove_all(run_dir);
    auto overrides = common(run_dir);
    overrides.insert(overrides.end(),
                     {"adapt.base=" + base_dir_, "adapt.domain=glossary", "adapt.init=" + init});
    const auto run = recipes::prepare_adaptation(load_config("configs/tiny.yaml", overrides));
    prior = written_prior(run_dir);
    EXPECT_EQ(prior.size() + 1, run.data.domains.size());
    return int64_t(run.data.domains.size()) - 1;
  }

  static void TearDownTestSuite() { fs::remove_all(base_dir_); }

  static std::string base_dir_;
};
std::string DaptInitTest::base_dir_;

TEST_F(DaptInitTest, ClosestStartsFromTheExpertOfHighestPrior) {
  std::vector<double> prior;
  const auto dir = (fs::temp_directory_path() / "demix_dapt_init_closest").string();
  const auto novel = prepare("closest", dir, prior);
  const auto best = std::max_element(prior.begin(), prior.end()) - prior.begin();
  const auto worst = std::min_element(prior.begin(), prior.end()) - prior.begin();
  ASSERT_NE(best, worst) << "a uniform prior cannot tell the closest expert";
  const auto base = expert_params(base_dir_);
  int64_t compared = 0;
  for (const auto& [key, t] : expert_params((fs::path(dir) / "init").string()))
    if (key.first == novel) {
      EXPECT_TRUE(torch::equal(t, base.at({best, key.second}))) << key.second;
      ++compared;
    }
  EXPECT_GT(compared, 0);
}

TEST_F(DaptInitTest, MergeStartsFromThePriorWeightedAverage) {
  std::vector<double> prior;
  const auto dir = (fs::temp_directory_path() / "demix_dapt_init_merge").string();
  const auto novel = prepare("merge", dir, prior);
  const double total = std::accumulate(prior.begin(), prior.end(), 0.0);
  const auto best = std::max_element(prior.begin(), prior.end()) - prior.begin();
  const auto base = expert_params(base_dir_);
  int64_t compared = 0;
  double closest_gap = 0;  // how far the closest expert alone is from the merge
  for (const auto& [key, t] : expert_params((fs::path(dir) / "init").string())) {
    if (key.first != novel) continue;
    auto expected = at::zeros(t.sizes(), at::kDouble);  // in float64, from the written prior
    for (size_t j = 0; j < prior.size(); ++j)
      expected += base.at({int64_t(j), key.second}).to(at::kDouble) * (prior[j] / total);
    EXPECT_LE(test_support::relative_difference(t.to(at::kDouble), expected), 1e-6) << key.second;
    closest_gap = std::max(closest_gap, test_support::relative_difference(
                                            base.at({best, key.second}).to(at::kDouble), expected));
    ++compared;
  }
  EXPECT_GT(compared, 0);
  // The check above tells a merge from the closest expert only if they differ by far more than
  // its tolerance (a near one-hot prior would make them equal).
  EXPECT_GT(closest_gap, 1e-4) << "the prior is too peaked to tell a merge from the closest expert";
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
  const auto run = recipes::prepare_adaptation(load_config("configs/tiny.yaml", dapt_overrides));
  EXPECT_EQ(run.data.domains.back(), "glossary");
  EXPECT_EQ(run.train.trainable, Trainable::kExperts);
  EXPECT_EQ(run.data.sequences_per_domain, 3);  // the adaptation's batch, not the base model's
  train::Trainer dapt(run);
  dapt.run();

  // Shared parameters and old experts are bit-identical to the base model; the new expert moved
  // away from its initialisation.
  const auto before = base.model().named_parameters();
  const auto glossary = int64_t(run.data.domains.size()) - 1;
  model::Gpt init(model::GptConfig::from(run));
  checkpoint::load_model(run.train.init_from, *init);
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
