#include "demix/recipes/dapt.h"

#include <algorithm>
#include <filesystem>

#include "demix/checkpoint/checkpoint.h"
#include "demix/checkpoint/expert_ops.h"
#include "demix/checkpoint/layout.h"
#include "demix/core/error.h"
#include "demix/data/corpus.h"
#include "demix/eval/mixture.h"

namespace demix::recipes {

namespace layout = checkpoint::layout;
namespace fs = std::filesystem;

namespace {

// The base model's config, with the run's optimizer, training and evaluation settings and its
// batch size (sequences of the new domain per step).
Config run_config(const Config& config, const Config& base) {
  Config run = base;
  run.data.sequences_per_domain = config.data.sequences_per_domain;
  run.optim = config.optim;
  run.train = config.train;
  run.eval = config.eval;
  run.dist = config.dist;
  run.adapt = config.adapt;
  return run;
}

}  // namespace

Config prepare_adaptation(const Config& config) {
  const auto& a = config.adapt;
  if (a.base.empty() || a.domain.empty())
    throw Error("adapt.base and adapt.domain: both are needed for `demix adapt`");
  const auto base = checkpoint::resolve_checkpoint(a.base);
  const auto base_config = checkpoint::checkpoint_config(base);
  const auto& old = base_config.data.domains;
  if (std::find(old.begin(), old.end(), a.domain) != old.end())
    throw Error("adapt.domain=" + a.domain + ": " + base + " was already trained on it");
  const fs::path out(config.train.out_dir);
  if (fs::exists(layout::checkpoints(out) / layout::kLatest) || fs::exists(out / "init"))
    throw Error(config.train.out_dir + ": already holds an adaptation run; set train.out_dir");
  Config run = run_config(config, base_config);
  run.train.train_domains = {a.domain};
  auto& novel = run.data.eval_domains;
  novel.erase(std::remove(novel.begin(), novel.end(), a.domain), novel.end());

  if (base_config.n_experts() == 0) {  // Dense-DAPT: the same model, now trained on the domain
    run.data.domains.push_back(a.domain);
    run.train.init_from = base;
    if (run.train.trainable == Trainable::kExperts) run.train.trainable = Trainable::kAll;
    run.validate("adapt");
    return run;
  }

  // DEMix-DAPT: the new expert starts from the closest expert (or the prior-weighted average).
  model::Gpt model(model::GptConfig::from(base_config));
  checkpoint::load_model(base, *model);
  const auto held_out = data::eval_windows(*data::open_split(base_config, a.domain, "valid"),
                                           base_config.model.seq_len, 0);
  const eval::MixtureOptions options{config.eval.posterior, 0, config.eval.batch_size};
  const auto prior =
      eval::estimate_prior(*model, held_out, config.eval.prior_blocks, config.eval.alpha, options);
  fs::create_directories(out);
  eval::write_prior((out / "prior.json").string(), prior, old, a.domain + "/valid",
                    std::min<int64_t>(config.eval.prior_blocks, held_out.inputs.size(0)));
  auto weights = prior.probs();
  if (a.init == AdaptInit::kClosest) {
    const auto best = std::max_element(weights.begin(), weights.end()) - weights.begin();
    std::fill(weights.begin(), weights.end(), 0.0);
    weights[size_t(best)] = 1.0;
    spdlog::info("adapt: {} starts from expert {} (cached prior {:.3f})", a.domain,
                 old[size_t(best)], prior.probs()[size_t(best)]);
  }
  const auto init = (out / "init").string();
  checkpoint::merge_experts(base, old, weights, a.domain, init);
  run.data = checkpoint::checkpoint_config(init).data;
  run.data.sequences_per_domain = config.data.sequences_per_domain;
  run.train.init_from = init;
  run.train.trainable = Trainable::kExperts;
  run.validate("adapt");
  return run;
}

}  // namespace demix::recipes
