// `demix generate`: sample text from a checkpoint with one expert (--domain), or with the experts
// mixed by the domain posterior of the text so far (--prior FILE or --mix uniform).

#include <cmath>
#include <cstdio>

#include "demix/checkpoint/checkpoint.h"
#include "demix/core/device.h"
#include "demix/core/error.h"
#include "demix/data/tokenizer.h"
#include "demix/eval/mixture.h"
#include "demix/eval/routed_mixture.h"
#include "demix/generate/generator.h"
#include "demix/ops/execution_policy.h"
#include "options.h"

namespace demix::cli {
void add_generate_command(CLI::App& app) {
  struct Args {
    std::string checkpoint, prompt, domain, prior, mix, router;
    std::vector<std::string> overrides;
    int64_t max_tokens = 100;
    int64_t router_top_k = 0;  // 0: eval.top_k
    generate::SamplingOptions sampling;
  };
  auto args = std::make_shared<Args>();
  auto* command = app.add_subcommand(
      "generate",
      "sample text with one expert or a mixture; a DEMix model needs one of --domain, --prior, "
      "--mix or --router");
  command->add_option("checkpoint", args->checkpoint, "checkpoint or run directory")->required();
  command->add_option("--prompt", args->prompt, "text to continue")->required();
  auto* domain = command->add_option("--domain", args->domain, "route to this domain's expert");
  auto* prior = command->add_option("--prior", args->prior,
                                    "mix the experts, starting from this prior (prior.json)");
  auto* mix = command->add_option("--mix", args->mix, "mix the experts from a uniform prior")
                  ->check(CLI::IsMember({"uniform"}));
  auto* router = command
                     ->add_option("--router", args->router,
                                  "mix the experts the cluster router chooses (this file, else "
                                  "eval.router), re-chosen every eval.router_every tokens")
                     ->expected(0, 1);
  command
      ->add_option("--router-top-k", args->router_top_k,
                   "with --router: experts to run (default eval.top_k)")
      ->needs(router);
  domain->excludes(prior)->excludes(mix)->excludes(router);
  prior->excludes(mix)->excludes(router);
  mix->excludes(router);
  command->add_option("--max-tokens", args->max_tokens, "tokens to generate")
      ->capture_default_str();
  command->add_option("--temperature", args->sampling.temperature, "0 = greedy")
      ->capture_default_str();
  command->add_option("--top-k", args->sampling.top_k, "keep the k most likely tokens (0 = all)")
      ->capture_default_str();
  command->add_option("--top-p", args->sampling.top_p, "nucleus: keep this much probability")
      ->capture_default_str();
  command->add_option("--seed", args->sampling.seed, "sampling seed")->capture_default_str();
  command->add_option("--set", args->overrides, "override a key: --set train.device=cuda");
  command->callback([args, router] {
    const auto& s = args->sampling;
    if (!(s.temperature >= 0) || !std::isfinite(s.temperature))  // NaN fails every comparison
      throw Error("--temperature " + std::to_string(s.temperature) +
                  ": expected a finite value >= 0");
    if (s.top_k < 0) throw Error("--top-k " + std::to_string(s.top_k) + ": expected >= 0");
    if (!(s.top_p > 0 && s.top_p <= 1))
      throw Error("--top-p " + std::to_string(s.top_p) + ": expected in (0, 1]");
    if (args->max_tokens < 0)
      throw Error("--max-tokens " + std::to_string(args->max_tokens) + ": expected >= 0");
    const auto checkpoint = checkpoint::resolve_checkpoint(args->checkpoint);
    const auto config = with_overrides(checkpoint::checkpoint_config(checkpoint), args->overrides);
    ops::apply_execution_policy(config.train);
    const auto& domains = config.data.domains;
    const bool has_experts = config.n_experts() > 0;
    const bool routed = router->count() > 0;

    generate::ExpertChoice experts;
    experts.posterior = config.eval.posterior;
    if (!args->domain.empty()) {
      const auto it = std::find(domains.begin(), domains.end(), args->domain);
      if (it == domains.end())
        throw Error("--domain " + args->domain + ": not a training domain of " + checkpoint);
      experts.domain = it - domains.begin();
    } else if (!has_experts) {
      if (!args->prior.empty() || !args->mix.empty() || routed)
        throw Error(checkpoint + ": a dense model has no experts to mix");
      if (config.model.domain_token)
        throw Error(checkpoint +
                    ": a +DOMAIN-TOKEN model needs --domain X (--prior and --mix need experts)");
      experts.domain = 0;
    } else if (routed) {
      if (args->router.empty() && config.eval.router.empty())
        throw Error("--router: no router file (give --router FILE, or set eval.router)");
      if (args->router_top_k < 0)
        throw Error("--router-top-k " + std::to_string(args->router_top_k) + ": expected >= 1");
    } else if (!args->prior.empty()) {
      experts.log_prior = eval::read_prior(args->prior, domains).log_probs();
    } else if (!args->mix.empty()) {
      experts.log_prior = eval::Prior::uniform(config.n_experts()).log_probs();
    } else {
      throw Error(checkpoint +
                  ": a DEMix model needs one of --domain X, --prior prior.json, --mix uniform or "
                  "--router");
    }

    const data::Tokenizer tokenizer(config.tokenizer.model);
    model::Gpt gpt(model::GptConfig::from(config));
    checkpoint::load_model(checkpoint, *gpt, config);
    gpt->to(resolve_device(config.train.device));
    const auto ids = tokenizer.encode(args->prompt);
    const std::vector<int64_t> prompt(ids.begin(), ids.end());
    generate::Sampler sampler(args->sampling);
    generate::Generation out;
    if (routed) {
      const auto file = args->router.empty() ? config.eval.router : args->router;
      const auto cluster_router = eval::load_router(file, domains, config.model.vocab_size);
      const generate::RoutedChoice choice{
          &cluster_router, args->router_top_k > 0 ? args->router_top_k : config.eval.top_k,
          config.eval.router_every, config.eval.router_temperature};
      out = generate::generate_routed(*gpt, prompt, choice, args->max_tokens, sampler,
                                      tokenizer.eos_id());
    } else {
      out =
          generate::generate(*gpt, prompt, experts, args->max_tokens, sampler, tokenizer.eos_id());
    }
    std::printf("%s%s\n", args->prompt.c_str(), tokenizer.decode(out.tokens).c_str());
    if (!out.posterior.empty()) {
      const char* what = routed ? "router weights" : "posterior";
      std::fprintf(stderr, "%s before the first generated token: %s\n", what,
                   eval::format_prior(domains, out.posterior.front()).c_str());
      std::fprintf(stderr, "%s before the last generated token:  %s\n", what,
                   eval::format_prior(domains, out.posterior.back()).c_str());
    }
  });
}

}  // namespace demix::cli
