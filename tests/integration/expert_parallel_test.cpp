// Expert parallelism on Gloo with ranks as threads of one process sharing a FileStore, against a
// single process training on exactly the same global batch.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <thread>
#include <torch/csrc/distributed/c10d/FileStore.hpp>

#include "demix/core/config.h"
#include "demix/eval/mixture.h"
#include "demix/parallel/process_groups.h"
#include "demix/train/trainer.h"
#include "support/gloo_ranks.h"
#include "support/mixture_reference.h"

namespace demix {
namespace {
namespace fs = std::filesystem;
using test_support::Params;
using test_support::relative_difference;
using test_support::run_ranks;
using test_support::snapshot;

Config small(const std::vector<std::string>& domains, int64_t k, const std::string& out,
             bool overlap = true, const std::vector<std::string>& extra = {}) {
  std::string list = "[";
  for (size_t i = 0; i < domains.size(); ++i) list += (i ? "," : "") + domains[i];
  std::vector<std::string> overrides = {
      "data.domains=" + list + "]", "data.sequences_per_domain=" + std::to_string(k),
      "model.n_layer=2", "model.seq_len=64", "train.steps=3",
      // eps 1e-4, not 1e-8: with a tiny eps Adam turns fp32 rounding noise on
      // gradients whose true value is ~0 (the attention key bias's is exactly 0)
      // into +-lr updates, and the comparison would measure that amplification of
      // reduction order instead of the gradient synchronisation.
      "optim.warmup_steps=1", "optim.eps=1e-4", "train.out_dir=" + out,
      // ATen's GEMMs: OpenBLAS's last bits change with the thread count (between the single
      // process and the ranks here), which Adam turns into ~1.6e-5 differences in 3 steps.
      // cpu_gemm_step_test checks OpenBLAS against ATen.
      "train.cpu_gemm=aten", std::string("dist.overlap=") + (overlap ? "true" : "false")};
  overrides.insert(overrides.end(), extra.begin(), extra.end());
  return load_config("configs/tiny.yaml", overrides);
}

// A run directory of this test case: ctest may run the cases at the same time.
std::string run_dir(const std::string& suffix) {
  const std::string test = ::testing::UnitTest::GetInstance()->current_test_info()->name();
  const auto out = (fs::temp_directory_path() / ("demix_ep_" + test + "_" + suffix)).string();
  fs::remove_all(out);
  fs::remove_all(out + "_single");
  return out;
}

// Whether `rank` hosts a domain it trains on (train.train_domains), i.e. draws any rows.
bool draws_rows(const Config& config, const parallel::Placement& placement, int rank) {
  const auto& only = config.train.train_domains;
  for (int e : placement.experts_on(rank))
    if (only.empty() || std::count(only.begin(), only.end(), config.data.domains[size_t(e)]))
      return true;
  return false;
}

// Every rank's parameters and gradient norms against the single-process run on the same global
// batch (k rows per domain per rank, k * replicas in the process); shared parameters
// bit-identical on all ranks, each expert bit-identical on every rank of its group. `extra`:
// more overrides for both runs. Returns the single process's gradient norm of each step.
std::vector<double> expect_equivalent(int W, const std::vector<std::string>& domains, int64_t k,
                                      bool overlap = true,
                                      const std::vector<std::string>& extra = {}) {
  const auto out = run_dir(std::to_string(W) + "_" + std::to_string(domains.size()));
  const int E = int(domains.size());
  const parallel::Placement placement(W, E);
  const auto config = small(domains, k, out, overlap, extra);
  test_support::RankOutputs outputs;
  const auto ranks = run_ranks(W, config, 3, "", false, &outputs);
  for (int r = 0; r < W; ++r)  // with overlap, all-reduces start during backward
    if (draws_rows(config, placement, r))
      EXPECT_EQ(outputs.overlapped[size_t(r)] > 0, overlap) << "rank " << r;
  train::Trainer single(small(domains, k * placement.replicas(), out + "_single", overlap, extra));
  std::vector<double> norms;
  for (int s = 0; s < 3; ++s) norms.push_back(single.train_step().grad_norm.item<double>());
  const auto reference = snapshot(single);

  for (int r = 0; r < W; ++r) {
    for (int s = 0; s < 3; ++s)  // each parameter counted once, as in one process
      EXPECT_NEAR(outputs.grad_norms[size_t(r)].at(size_t(s)), norms[size_t(s)],
                  1e-5 * norms[size_t(s)])
          << "gradient norm of step " << s << " on rank " << r;
    for (const auto& [name, value] : ranks[size_t(r)]) {
      if (!reference.count(name)) {
        ADD_FAILURE() << name << " is not in the single-process model";
        continue;
      }
      EXPECT_LE(relative_difference(value, reference.at(name)), 1e-5)
          << "rank " << r << " " << name;
      const auto expert = model::expert_of(name);
      const int first = expert ? placement.leader_of(int(*expert)) : 0;
      EXPECT_TRUE(torch::equal(value, ranks[size_t(first)].at(name)))
          << name << " differs between rank " << r << " and rank " << first;
    }
    // A rank holds the shared parameters and only its own experts.
    int64_t experts_here = 0;
    for (const auto& [name, value] : ranks[size_t(r)])
      if (const auto e = model::expert_of(name)) {
        const auto mine = placement.experts_on(r);
        EXPECT_NE(std::find(mine.begin(), mine.end(), int(*e)), mine.end()) << name;
        experts_here += value.numel();
      }
    EXPECT_GT(experts_here, 0);
  }
  return norms;
}

TEST(ExpertParallelTest, FourRanksTwoExpertsEqualOneProcess) {
  expect_equivalent(4, {"scripture", "python_code"}, 1);
}

TEST(ExpertParallelTest, FourRanksWithoutOverlapEqualOneProcess) {
  expect_equivalent(4, {"scripture", "python_code"}, 1, /*overlap=*/false);
}

TEST(ExpertParallelTest, GradientAccumulationWithOverlapEqualsOneProcess) {
  // 2 micro-batches of k=1 on each of 4 ranks: each expert's group of 2 ranks accumulates,
  // against one process drawing 2 rows per domain in each of its 2 micro-batches.
  expect_equivalent(4, {"scripture", "python_code"}, 1, true, {"train.grad_accum=2"});
}

// train.train_domains a subset with every parameter trainable: on 2 ranks rank 0 draws 4 rows
// and rank 1 one; the 3 experts no rank trains must stay where one process leaves them.
TEST(ExpertParallelTest, TrainDomainsSubsetOnUnevenRanksEqualsOneProcess) {
  expect_equivalent(2,
                    {"scripture", "humour", "dictionary", "python_docs", "perl_docs", "manpages",
                     "python_code", "wordnet"},
                    1, true,
                    {"train.train_domains=[scripture,humour,dictionary,python_docs,perl_docs]",
                     "train.trainable=all", "train.grad_accum=2"});
}

// W > E with one of two domains trained: ranks 0 and 1 host the untrained expert, draw nothing
// and join the gradient sync only.
TEST(ExpertParallelTest, TrainDomainsSubsetWithIdleRanksEqualsOneProcess) {
  expect_equivalent(4, {"scripture", "python_code"}, 1, true,
                    {"train.train_domains=[python_code]", "train.trainable=all"});
}

// Clipping divides every gradient by the global norm: each expert must be counted once, not once
// per replica (2 here), for the updates to match one process's.
TEST(ExpertParallelTest, ClippedGradientNormEqualsOneProcess) {
  const double clip = 0.05;
  const auto norms = expect_equivalent(4, {"scripture", "python_code"}, 1, true,
                                       {"optim.grad_clip=" + std::to_string(clip)});
  for (const double norm : norms) EXPECT_GT(norm, 2 * clip);  // clipping is engaged
}

TEST(ExpertParallelTest, TwoRanksFourExpertsEqualOneProcess) {
  expect_equivalent(2, {"scripture", "humour", "manpages", "python_code"}, 1);
}

TEST(ExpertParallelTest, TwoRanksTwoExpertsEqualOneProcess) {
  expect_equivalent(2, {"humour", "wordnet"}, 2);
}

// Train on 4 ranks, resume on 2, evaluate on 1: a checkpoint does not depend on the placement.
// The resharded AdamW state and the step after it equal an uninterrupted single process's.
TEST(ExpertParallelTest, CheckpointReshardsAcrossWorldSizes) {
  const auto out = run_dir("4_2");
  const std::vector<std::string> domains = {"scripture", "python_code"};
  const auto four = run_ranks(4, small(domains, 1, out), 2, "", /*checkpoint=*/true);

  auto single_config = small(domains, 2, out + "_single");
  train::Trainer single(single_config);
  for (int s = 0; s < 2; ++s) single.train_step();
  std::map<std::string, at::Tensor> single_state;  // a copy: the optimizer updates in place
  for (const auto& [name, t] : single.optimizer_state()) single_state[name] = t.clone();
  single.train_step();
  const auto single_after = snapshot(single);

  model::Gpt loaded(model::GptConfig::from(single_config));
  const auto checkpoint = checkpoint::resolve_checkpoint(out);
  checkpoint::load_model(checkpoint, *loaded);
  for (const auto& item : loaded->named_parameters()) {
    const auto e = model::expert_of(item.key());
    const int holder = e ? parallel::Placement(4, 2).leader_of(int(*e)) : 0;
    EXPECT_TRUE(torch::equal(item.value(), four[size_t(holder)].at(item.key()))) << item.key();
  }
  test_support::RankOutputs resumed;  // loaded on 2 ranks, no step taken
  run_ranks(2, small(domains, 2, out), 0, "auto", false, &resumed);
  const auto two = run_ranks(2, small(domains, 2, out), 1, "auto");
  EXPECT_EQ(checkpoint::checkpoint_state(checkpoint).step, 2);
  for (int r = 0; r < 2; ++r) {
    int64_t moments = 0;
    for (const auto& [name, t] : resumed.optimizer[size_t(r)]) {
      ASSERT_TRUE(single_state.count(name)) << name;
      EXPECT_LE(relative_difference(t, single_state.at(name)), 1e-5) << "rank " << r << " " << name;
      moments += name.rfind("exp_avg", 0) == 0;
    }
    EXPECT_GT(moments, 0) << "rank " << r;
    for (const auto& [name, value] : two[size_t(r)])  // the next step, as if never interrupted
      EXPECT_LE(relative_difference(value, single_after.at(name)), 1e-5)
          << "rank " << r << " " << name;
  }
}

// A NaN loss on rank 1 alone: the all-reduced gradient norm is non-finite on every rank, so every
// rank skips that step (rank 0 too) and both end where one finite step left them.
TEST(ExpertParallelTest, NonFiniteStepOnOneRankIsSkippedOnAll) {
  const auto out = (fs::temp_directory_path() / "demix_ep_nonfinite").string();
  fs::remove_all(out);
  const auto config = small({"scripture", "python_code"}, 1, out);
  const auto one_step = run_ranks(2, config, 1);
  ::setenv("DEMIX_FAULT", "nan:1:1", 1);
  const auto skipped = run_ranks(2, config, 2);
  ::unsetenv("DEMIX_FAULT");
  for (int r = 0; r < 2; ++r)
    for (const auto& [name, value] : skipped[size_t(r)])
      EXPECT_TRUE(torch::equal(value, one_step[size_t(r)].at(name))) << "rank " << r << " " << name;
}

}  // namespace
}  // namespace demix

namespace demix {
namespace {

// Mixing under expert parallelism: each rank scores the experts it leads, the log-probs are
// all-gathered, and every rank gets what one process computes (the float64 reference from one
// known-domain forward per expert): with an updating prior, with it re-choosing the top 2, and
// with a fixed top-1.
TEST(ExpertParallelTest, MixingOnRanksEqualsOneProcess) {
  for (const auto& [W, E] : std::vector<std::pair<int, int>>{{2, 4}, {4, 2}}) {
    auto gpt = model::GptConfig::from(small({"a", "b", "c", "d"}, 1, "unused"));
    gpt.n_experts = E;
    model::Gpt single(gpt, 21);
    torch::manual_seed(3);
    const auto tokens = torch::randint(0, gpt.vocab_size, {6, gpt.block_size + 1});
    const data::EvalWindows windows{tokens.narrow(1, 0, gpt.block_size),
                                    tokens.narrow(1, 1, gpt.block_size)};
    std::vector<double> skewed(size_t(E), 1.0 / (E + 2));
    skewed[1] = 3.0 / (E + 2);
    const auto lp = reference::separate_expert_logprobs(*single, windows, E);
    const std::vector<double> uniform(size_t(E), 1.0 / E);
    const double expected = reference::reference_mixture(lp, uniform, 0.3, 0).nll;
    const double expected_top2 = reference::reference_mixture(lp, uniform, 0.3, 2).nll;
    const double expected_top1 = reference::reference_mixture(lp, skewed, 0, 1).nll;

    const auto store_path = fs::temp_directory_path() / ("demix_mix_store_" + std::to_string(W));
    fs::remove(store_path);
    auto store = c10::make_intrusive<c10d::FileStore>(store_path.string(), W);
    const auto ranks = static_cast<size_t>(W);
    std::vector<double> got(ranks), got_top2(ranks), got_top1(ranks);
    std::vector<std::thread> threads;
    for (int r = 0; r < W; ++r)
      threads.emplace_back([&, r] {
        parallel::ProcessGroups groups(parallel::Placement(W, E), r, store, "gloo",
                                       std::chrono::seconds(60));
        auto local = gpt;
        const auto hosted = groups.placement().experts_on(r);
        local.local_experts.assign(hosted.begin(), hosted.end());
        model::Gpt model(local, 21);
        const eval::ExpertScorer scorer(*model, &groups);
        auto prior = eval::Prior::updating(E, 0.3);
        got[size_t(r)] = eval::score_mixture(scorer, windows, prior, {}).score.nll_sum;
        auto prior_top2 = eval::Prior::updating(E, 0.3);
        got_top2[size_t(r)] =
            eval::score_mixture(scorer, windows, prior_top2, {eval::PosteriorKind::kPrefix, 2, 4})
                .score.nll_sum;
        auto fixed_prior = eval::Prior::fixed(skewed);
        got_top1[size_t(r)] =
            eval::score_mixture(scorer, windows, fixed_prior, {eval::PosteriorKind::kPrefix, 1, 4})
                .score.nll_sum;
      });
    for (auto& t : threads) t.join();
    for (int r = 0; r < W; ++r) {
      EXPECT_NEAR(got[size_t(r)], expected, 1e-6 * expected) << W << " ranks, rank " << r;
      EXPECT_NEAR(got_top2[size_t(r)], expected_top2, 1e-6 * expected_top2) << "rank " << r;
      EXPECT_NEAR(got_top1[size_t(r)], expected_top1, 1e-6 * expected_top1) << "rank " << r;
      EXPECT_EQ(got[size_t(r)], got[0]);  // every rank returns the same result
    }
    fs::remove(store_path);
  }
}

}  // namespace
}  // namespace demix
