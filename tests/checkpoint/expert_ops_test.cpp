#include "demix/checkpoint/expert_ops.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "demix/checkpoint/checkpoint.h"
#include "demix/core/error.h"
#include "demix/core/manifest.h"
#include "demix/core/safetensors.h"
#include "demix/optim/optimizer.h"
#include "support/small_config.h"

namespace demix::checkpoint {
namespace {
namespace fs = std::filesystem;

Config small_config(const std::string& expert_scope = "ff") {
  Config c = test_support::small_config();
  c.data.eval_domains = {"delta"};
  c.model.expert_scope = parse_choice<ExpertScope>(expert_scope).value();
  return c;
}

// A checkpoint of a small model after one AdamW step, in a fresh directory under /tmp.
std::string make_checkpoint(const std::string& name, uint64_t seed,
                            const std::string& expert_scope = "ff") {
  const auto run = (fs::temp_directory_path() / name).string();
  fs::remove_all(run);
  const auto config = small_config(expert_scope);
  model::Gpt m(model::GptConfig::from(config), seed);
  std::vector<std::pair<std::string, at::Tensor>> named;
  for (const auto& item : m->named_parameters()) named.emplace_back(item.key(), item.value());
  optim::AdamW adam(named, config.optim);
  torch::manual_seed(seed);
  m->loss(torch::randint(0, 40, {3, 8}), torch::randint(0, 40, {3, 8}),
          model::Routing({0, 1, 2}, torch::kCPU))
      .backward();
  adam.step(1e-2);
  return checkpoint::save_checkpoint(run, *m, &adam, config, {1, 0}, 1);
}

std::string fresh(const std::string& name) {
  const auto path = (fs::temp_directory_path() / name).string();
  fs::remove_all(path);
  return path;
}

// Logits of a fixed batch routed to `domain`, from the model a checkpoint describes.
at::Tensor logits_for(const std::string& checkpoint, const std::string& domain) {
  const auto config = checkpoint::checkpoint_config(checkpoint);
  model::Gpt m(model::GptConfig::from(config), /*seed=*/12345);
  checkpoint::load_model(checkpoint, *m);
  const auto& d = config.data.domains;
  const int64_t id = std::find(d.begin(), d.end(), domain) - d.begin();
  torch::manual_seed(7);
  torch::NoGradGuard no_grad;
  return m->forward(torch::randint(0, 40, {2, 8}), model::Routing({id, id}, torch::kCPU));
}

TEST(ExpertOpsTest, ListShowsEveryExpert) {
  const auto ckpt = make_checkpoint("demix_ops_list", 1);
  const auto experts = list_experts(ckpt);
  ASSERT_EQ(experts.size(), 3u);
  EXPECT_EQ(experts[1].domain, "beta");
  EXPECT_EQ(experts[1].parameters, 2 * (16 * 64 + 64 + 64 * 16 + 16));  // 2 layers of fc1+fc2
  EXPECT_EQ(experts[1].steps, 1);
}

TEST(ExpertOpsTest, RemoveThenAddRestoresTheSameModel) {
  const auto original = make_checkpoint("demix_ops_orig", 2);
  const auto removed = fresh("demix_ops_removed"), restored = fresh("demix_ops_restored");
  remove_expert(original, "beta", removed);
  EXPECT_FALSE(fs::exists(removed + "/experts/beta.safetensors"));
  EXPECT_EQ(checkpoint::checkpoint_config(removed).data.domains,
            (std::vector<std::string>{"alpha", "gamma"}));
  EXPECT_EQ(checkpoint::checkpoint_config(removed).data.eval_domains,
            (std::vector<std::string>{"delta", "beta"}));
  add_expert(removed, original, "beta", restored);
  for (const auto* d : {"alpha", "beta", "gamma"})
    EXPECT_TRUE(torch::equal(logits_for(restored, d), logits_for(original, d))) << d;
  EXPECT_TRUE(fs::exists(original + "/experts/beta.safetensors"));  // the source is untouched
}

TEST(ExpertOpsTest, BlockExpertsAreRemovedAndAddedLikeFfExperts) {
  // expert_scope=block: an expert file holds whole blocks (attention included)
  const auto original = make_checkpoint("demix_ops_block", 4, "block");
  const auto removed = fresh("demix_ops_block_removed"), restored = fresh("demix_ops_block_back");
  remove_expert(original, "beta", removed);
  EXPECT_TRUE(torch::equal(logits_for(removed, "gamma"), logits_for(original, "gamma")));
  add_expert(removed, original, "beta", restored);
  for (const auto* d : {"alpha", "beta", "gamma"})
    EXPECT_TRUE(torch::equal(logits_for(restored, d), logits_for(original, d))) << d;
  EXPECT_FALSE(torch::equal(logits_for(original, "alpha"), logits_for(original, "beta")));
  EXPECT_EQ(list_experts(original).front().parameters,
            2 * (4 * 16 + 3 * 16 * 16 + 3 * 16 + 16 * 16 + 16 + 2 * 16 * 64 + 64 + 16));
}

TEST(ExpertOpsTest, MergeIsTheWeightedParameterAverage) {
  const auto ckpt = make_checkpoint("demix_ops_merge", 3);
  const auto copy = fresh("demix_ops_merge_copy"), mixed = fresh("demix_ops_merge_mix");
  merge_experts(ckpt, {"alpha", "gamma"}, {1.0, 0.0}, "delta", copy);
  EXPECT_TRUE(torch::equal(logits_for(copy, "delta"), logits_for(ckpt, "alpha")));
  merge_experts(ckpt, {"alpha", "beta", "gamma"}, {1.0, 2.0, 1.0}, "delta", mixed);
  const auto a = load_safetensors(ckpt + "/experts/alpha.safetensors");
  const auto b = load_safetensors(ckpt + "/experts/beta.safetensors");
  const auto g = load_safetensors(ckpt + "/experts/gamma.safetensors");
  for (const auto& [name, t] : load_safetensors(mixed + "/experts/delta.safetensors")) {
    const auto expected = (a.at(name).to(torch::kDouble) + 2 * b.at(name).to(torch::kDouble) +
                           g.at(name).to(torch::kDouble)) /
                          4;
    EXPECT_TRUE(torch::allclose(t.to(torch::kDouble), expected, 0, 1e-7)) << name;
  }
  // The merged checkpoint trains on: its optimizer state exists for the new expert.
  EXPECT_TRUE(fs::exists(mixed + "/optimizer/experts/delta.safetensors"));
}

void expect_refused(const std::function<void(const std::string&)>& op, const std::string& out,
                    const std::string& fragment) {
  try {
    op(out);
    FAIL() << "expected an error containing '" << fragment << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos);
  }
  EXPECT_FALSE(fs::exists(out)) << "nothing may be written";
  EXPECT_FALSE(fs::exists(out + ".tmp"));
}

TEST(ExpertOpsTest, BadRequestsAreOneLineErrorsAndWriteNothing) {
  const auto ckpt = make_checkpoint("demix_ops_bad", 4);
  const auto other = make_checkpoint("demix_ops_other", 5);  // other shared parameters
  const auto out = fresh("demix_ops_bad_out");
  expect_refused([&](const std::string& o) { add_expert(ckpt, other, "beta", o); }, out,
                 "already has an expert for domain 'beta'");
  const auto removed = fresh("demix_ops_bad_removed");
  remove_expert(ckpt, "beta", removed);
  expect_refused([&](const std::string& o) { add_expert(removed, other, "beta", o); }, out,
                 "fingerprint mismatch");
  expect_refused([&](const std::string& o) { remove_expert(ckpt, "omega", o); }, out,
                 "no expert for domain 'omega'");
  expect_refused([&](const std::string& o) { merge_experts(ckpt, {"alpha"}, {1.0}, "beta", o); },
                 out, "already has an expert for domain 'beta'");
  expect_refused(
      [&](const std::string& o) {
        merge_experts(ckpt, {"alpha", "beta"}, {0.0, 0.0}, "x", o);
      },
      out, "positive sum");
  expect_refused([&](const std::string&) { remove_expert(ckpt, "beta", removed); }, out,
                 "already exists");
}

// `--out ckpt/no_beta` on a fresh clone: the parent directories are created.
TEST(ExpertOpsTest, OutputUnderMissingDirectoriesIsCreated) {
  const auto ckpt = make_checkpoint("demix_ops_nested_src", 6);
  const auto out = fresh("demix_ops_nested") + "/ckpt/no_beta";
  remove_expert(ckpt, "beta", out);
  EXPECT_TRUE(torch::equal(logits_for(out, "gamma"), logits_for(ckpt, "gamma")));
}

TEST(ExpertOpsTest, FileSystemErrorsNameThePath) {
  const auto ckpt = make_checkpoint("demix_ops_fs_src", 6);
  const auto base = fresh("demix_ops_fs");
  fs::create_directories(base);
  std::ofstream(base + "/file") << "x";
  const auto out = base + "/file/no_beta";  // its parent is a file
  expect_refused([&](const std::string& o) { remove_expert(ckpt, "beta", o); }, out,
                 "--out " + out + ": cannot create its directory " + base + "/file: ");
}

// The merged expert and its fresh optimizer state record their own domain.
TEST(ExpertOpsTest, WrittenExpertFilesRecordTheirDomain) {
  const auto ckpt = make_checkpoint("demix_ops_meta", 3);
  const auto merged = fresh("demix_ops_meta_merged");
  merge_experts(ckpt, {"alpha", "gamma"}, {1.0, 1.0}, "delta", merged);
  for (const auto* sub : {"/experts/", "/optimizer/experts/"}) {
    EXPECT_EQ(safetensors_metadata(merged + sub + "delta.safetensors").at("domain"), "delta");
    EXPECT_EQ(safetensors_metadata(merged + sub + "alpha.safetensors").at("domain"), "alpha");
  }
}

// A donor whose beta file holds alpha's expert (its manifest written again) is refused by name;
// a corrupted source is not sealed again under a new manifest.
TEST(ExpertOpsTest, SwappedOrCorruptedFilesAreRefused) {
  const auto ckpt = make_checkpoint("demix_ops_swap", 4);
  const auto removed = fresh("demix_ops_swap_removed");
  remove_expert(ckpt, "beta", removed);
  const auto donor = fresh("demix_ops_swap_donor");
  fs::copy(ckpt, donor, fs::copy_options::recursive);
  fs::copy_file(ckpt + "/experts/alpha.safetensors", donor + "/experts/beta.safetensors",
                fs::copy_options::overwrite_existing);
  write_manifest(donor);
  const auto out = fresh("demix_ops_swap_out");
  expect_refused([&](const std::string& o) { add_expert(removed, donor, "beta", o); }, out,
                 "holds the expert of domain 'alpha'");
  std::fstream f(ckpt + "/experts/gamma.safetensors",
                 std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(-3, std::ios::end);
  f.put('\x7f');
  f.close();
  expect_refused([&](const std::string& o) { remove_expert(ckpt, "alpha", o); }, out,
                 "gamma.safetensors: checksum differs");
}

}  // namespace
}  // namespace demix::checkpoint
