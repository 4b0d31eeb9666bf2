// `demix generate`: sample text from a checkpoint with one expert (--domain), or with the experts
// mixed by the domain posterior of the text so far (--prior FILE or --mix uniform).

#include <cmath>
#include <cstdio>

#include "demix/checkpoint/checkpoint.h"
#include "demix/core/device.h"
#include "demix/core/error.h"
#include "demix/data/tokenizer.h"
#include "demix/eval/mixture.h"
#include "demix/generate/generator.h"
#include "demix/ops/execution_policy.h"
#include "options.h"

namespace demix::cli {
void add_generate_command(CLI::App& app) {
  struct Args {
    std::string checkpoint, prompt, domain, prior, mix;
    std::vector<std::string> overrides;
    int64_t max_tokens = 100;
    generate::SamplingOptions sampling;
  };
  auto args = std::make_shared<Args>();
  auto* command = app.add_subcommand(
      "generate",
      "sample text with one expert or a mixture; a DEMix model needs one of --domain, --prior "
      "or --mix");
  command->add_option("checkpoint", args->checkpoint, "checkpoint or run directory")->required();
  command->add_option("--prompt", args->prompt, "text to continue")->required();
  auto* domain = command->add_option("--domain", args->domain, "route to this domain's expert");
  auto* prior = command->add_option("--prior", args->prior,
                                    "mix the experts, starting from this prior (prior.json)");
  auto* mix = command->add_option("--mix", args->mix, "mix the experts from a uniform prior")
                  ->check(CLI::IsMember({"uniform"}));
  domain->excludes(prior)->excludes(mix);
  prior->excludes(mix);
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
  command->callback([args] {
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

    generate::ExpertChoice experts;
    experts.posterior = config.eval.posterior;
    if (!args->domain.empty()) {
      const auto it = std::find(domains.begin(), domains.end(), args->domain);
      if (it == domains.end())
        throw Error("--domain " + args->domain + ": not a training domain of " + checkpoint);
      experts.domain = it - domains.begin();
    } else if (!has_experts) {
      if (!args->prior.empty() || !args->mix.empty())
        throw Error(checkpoint + ": a dense model has no experts to mix");
      if (config.model.domain_token)
        throw Error(checkpoint +
                    ": a +DOMAIN-TOKEN model needs --domain X (--prior and --mix need experts)");
      experts.domain = 0;
    } else if (!args->prior.empty()) {
      experts.log_prior = eval::read_prior(args->prior, domains).log_probs();
    } else if (!args->mix.empty()) {
      experts.log_prior = eval::Prior::uniform(config.n_experts()).log_probs();
    } else {
      throw Error(checkpoint +
                  ": a DEMix model needs one of --domain X, --prior prior.json or --mix uniform");
    }

    const data::Tokenizer tokenizer(config.tokenizer.model);
    model::Gpt gpt(model::GptConfig::from(config));
    checkpoint::load_model(checkpoint, *gpt, config);
    gpt->to(resolve_device(config.train.device));
    const auto ids = tokenizer.encode(args->prompt);
    generate::Sampler sampler(args->sampling);
    const auto out = generate::generate(*gpt, std::vector<int64_t>(ids.begin(), ids.end()), experts,
                                        args->max_tokens, sampler, tokenizer.eos_id());
    std::printf("%s%s\n", args->prompt.c_str(), tokenizer.decode(out.tokens).c_str());
    if (!out.posterior.empty()) {
      std::fprintf(stderr, "posterior before the first generated token: %s\n",
                   eval::format_prior(domains, out.posterior.front()).c_str());
      std::fprintf(stderr, "posterior before the last generated token:  %s\n",
                   eval::format_prior(domains, out.posterior.back()).c_str());
    }
  });
}

}  // namespace demix::cli
