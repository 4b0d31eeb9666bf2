// Tests on the bundled corpus (data/demix12, encoded by the ctest fixture `corpus.encode`).

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>

#include "demix/core/config.h"
#include "demix/core/error.h"
#include "demix/data/corpus.h"
#include "demix/data/tokenizer.h"
#include "demix/eval/perplexity.h"
#include "demix/train/trainer.h"

namespace demix {
namespace {

Config tiny(std::vector<std::string> overrides = {}) {
  return load_config("configs/tiny.yaml", overrides);
}

TEST(TokenizerTest, DecodeEncodeIsTheIdentityOnEveryDomain) {
  const auto config = tiny();
  const data::Tokenizer tokenizer(config.tokenizer.model);
  EXPECT_EQ(tokenizer.vocab_size(), config.model.vocab_size);
  const auto domains = config.all_domains();
  for (const auto& domain : domains) {
    const auto docs =
        data::split_documents(data::read_file(data::text_path(config, domain, "valid")));
    ASSERT_GT(docs.size(), 1u) << domain;
    for (size_t i = 0; i < std::min<size_t>(docs.size(), 20); ++i) {
      const auto ids = tokenizer.encode(docs[i]);
      EXPECT_EQ(tokenizer.decode(std::vector<int64_t>(ids.begin(), ids.end())), docs[i])
          << domain << " document " << i;
    }
  }
}

TEST(TokenizerTest, TokenFilesHoldTheEncodedDocumentsAndEos) {
  const auto config = tiny();
  const data::Tokenizer tokenizer(config.tokenizer.model);
  for (const auto& domain : {"scripture", "python_code"}) {
    const auto text = data::read_file(data::text_path(config, domain, "test"));
    const auto file = data::open_split(config, domain, "test");
    std::vector<int64_t> expected;
    for (const auto& doc : data::split_documents(text)) {
      const auto ids = tokenizer.encode(doc);
      expected.insert(expected.end(), ids.begin(), ids.end());
      expected.push_back(tokenizer.eos_id());
    }
    ASSERT_EQ(file->size(), expected.size()) << domain;
    std::vector<int64_t> tokens(expected.size());
    file->read(0, tokens.size(), tokens.data());
    EXPECT_EQ(tokens, expected) << domain;
    EXPECT_EQ(file->info().text_bytes, text.size());
    EXPECT_EQ(file->info().tokenizer_fingerprint, tokenizer.fingerprint());
  }
}

// A short run on real text: the validation loss must fall far below where it started (ln V = 9.0
// for an untrained model); a model that does not learn stays near it.
TEST(TrainerTest, ShortRealDataRunLearns) {
  const auto out = (std::filesystem::temp_directory_path() / "demix_real_data_run").string();
  std::filesystem::remove_all(out);
  train::Trainer trainer(tiny({"train.steps=60", "optim.warmup_steps=10", "train.out_dir=" + out,
                               "train.eval_tokens=4096", "train.log_every=20"}));
  const auto before = trainer.validate();
  trainer.run();
  const auto after = trainer.validate();
  for (size_t d = 0; d < before.size(); ++d) {
    EXPECT_GT(before[d], 8.5) << d;
    EXPECT_LT(after[d], before[d] - 1.5) << "domain " << d << " did not learn";
  }
  // The run's checkpoint evaluates to the same validation loss as the live model.
  const auto checkpoint = checkpoint::resolve_checkpoint(out);
  auto config = checkpoint::checkpoint_config(checkpoint);
  model::Gpt reloaded(model::GptConfig::from(config));
  checkpoint::load_model(checkpoint, *reloaded);
  const auto valid = data::open_split(config, config.data.domains[0], "valid");
  const auto score = eval::score_split(*reloaded, *valid, 0, config.train.eval_tokens, 8);
  EXPECT_NEAR(score.loss(), after[0], 1e-5);
}

// Resuming from a checkpoint continues the uninterrupted run exactly: same losses, same weights.
TEST(TrainerTest, ResumeContinuesBitForBit) {
  namespace fs = std::filesystem;
  const auto full_dir = (fs::temp_directory_path() / "demix_resume_full").string();
  const auto half_dir = (fs::temp_directory_path() / "demix_resume_half").string();
  fs::remove_all(full_dir);
  fs::remove_all(half_dir);
  auto config = [](const std::string& out) {
    return tiny(
        {"train.steps=6", "optim.warmup_steps=2", "model.n_layer=2", "train.out_dir=" + out});
  };
  train::Trainer full(config(full_dir));
  std::vector<double> full_losses;
  for (int i = 0; i < 6; ++i) full_losses.push_back(full.train_step().loss.item<double>());
  {
    train::Trainer first(config(half_dir));
    for (int i = 0; i < 3; ++i) EXPECT_EQ(first.train_step().loss.item<double>(), full_losses[i]);
    first.save_checkpoint();
  }
  train::Trainer resumed(config(half_dir), "auto");
  EXPECT_EQ(resumed.state().step, 3);
  for (int i = 3; i < 6; ++i)
    EXPECT_EQ(resumed.train_step().loss.item<double>(), full_losses[i]) << "step " << i;
  const auto expected = full.model().named_parameters();
  for (const auto& item : resumed.model().named_parameters())
    EXPECT_TRUE(torch::equal(item.value(), expected[item.key()])) << item.key();
}

// Sets DEMIX_FAULT for the life of the object (FaultInjection reads it when a Trainer is built).
struct ScopedFault {
  explicit ScopedFault(const char* value) { ::setenv("DEMIX_FAULT", value, 1); }
  ~ScopedFault() { ::unsetenv("DEMIX_FAULT"); }
};

std::map<std::string, at::Tensor> parameters_and_moments(train::Trainer& t) {
  std::map<std::string, at::Tensor> out;
  for (const auto& item : t.model().named_parameters())
    out[item.key()] = item.value().detach().clone();
  for (const auto& [name, tensor] : t.optimizer_state()) out["optimizer/" + name] = tensor.clone();
  return out;
}

// A NaN loss at step 1 makes a non-finite gradient norm: that update is skipped entirely
// (parameters, moments and AdamW step counts are those after step 0), then training goes on.
TEST(TrainerTest, Bf16StepsFollowFp32AndKeepFp32State) {
  // The same model, weights and batches in both precisions: bf16 matmuls change the losses a
  // little (so autocast is on), not their course; parameters and moments stay fp32.
  namespace fs = std::filesystem;
  std::map<std::string, std::vector<double>> losses;
  for (const std::string precision : {"fp32", "bf16"}) {
    const auto dir = (fs::temp_directory_path() / ("demix_precision_" + precision)).string();
    fs::remove_all(dir);
    train::Trainer trainer(tiny({"train.steps=4", "optim.warmup_steps=1", "model.n_layer=2",
                                 "train.precision=" + precision, "train.out_dir=" + dir}));
    for (int s = 0; s < 4; ++s)
      losses[precision].push_back(trainer.train_step().loss.item<double>());
    for (const auto& [name, tensor] : parameters_and_moments(trainer))
      EXPECT_EQ(tensor.scalar_type(), torch::kFloat) << precision << " " << name;
  }
  for (size_t s = 0; s < 4; ++s) {
    EXPECT_NEAR(losses["bf16"][s], losses["fp32"][s], 2e-2 * losses["fp32"][s]) << "step " << s;
    EXPECT_NE(losses["bf16"][s], losses["fp32"][s]) << "step " << s;
  }
}

TEST(TrainerTest, NonFiniteStepIsSkippedAndCounted) {
  namespace fs = std::filesystem;
  const auto dir = (fs::temp_directory_path() / "demix_nonfinite_skip").string();
  fs::remove_all(dir);
  ScopedFault fault("nan:0:1");
  train::Trainer trainer(
      tiny({"train.steps=3", "optim.warmup_steps=1", "model.n_layer=2", "train.out_dir=" + dir}));
  trainer.train_step();
  const auto after_first = parameters_and_moments(trainer);
  const auto skipped = trainer.train_step();
  EXPECT_FALSE(std::isfinite(skipped.grad_norm.item<double>()));
  EXPECT_EQ(trainer.skipped_steps(), 1);
  for (const auto& [name, tensor] : parameters_and_moments(trainer))
    EXPECT_TRUE(torch::equal(tensor, after_first.at(name))) << name << " changed";
  const auto next = trainer.train_step();
  EXPECT_TRUE(std::isfinite(next.loss.item<double>()));
  EXPECT_FALSE(
      torch::equal(trainer.model().named_parameters()["wte.weight"], after_first.at("wte.weight")));
}

TEST(TrainerTest, NonFiniteStepStopsTheRunUnderStop) {
  namespace fs = std::filesystem;
  const auto dir = (fs::temp_directory_path() / "demix_nonfinite_stop").string();
  fs::remove_all(dir);
  ScopedFault fault("nan:0:1");
  train::Trainer trainer(
      tiny({"train.steps=4", "optim.warmup_steps=1", "model.n_layer=2", "train.log_every=1",
            "train.eval_tokens=256", "train.nonfinite=stop", "train.out_dir=" + dir}));
  try {
    trainer.run();
    FAIL() << "the run went on";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("step 2: non-finite gradient norm in 1 steps in a row"),
              std::string::npos)
        << e.what();
  }
  EXPECT_FALSE(fs::exists(dir + "/checkpoints"));  // no checkpoint of a broken run
}

}  // namespace
}  // namespace demix
