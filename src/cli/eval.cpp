// `demix eval`: perplexity per domain and split with known-domain routing, the mixing report for
// unknown domains (--mixture), mixing with a given prior (--prior), or a plain text file (--text).
// `demix prior estimate`: the cached prior of a domain or a text file.

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "demix/checkpoint/checkpoint.h"
#include "demix/checkpoint/layout.h"
#include "demix/core/csv.h"
#include "demix/core/device.h"
#include "demix/core/error.h"
#include "demix/core/file.h"
#include "demix/core/json.h"
#include "demix/data/corpus.h"
#include "demix/data/tokenizer.h"
#include "demix/eval/mixture.h"
#include "demix/eval/mixture_table.h"
#include "demix/eval/perplexity.h"
#include "demix/eval/routed_mixture.h"
#include "demix/ops/execution_policy.h"
#include "options.h"

namespace demix::cli {
namespace {
namespace fs = std::filesystem;

struct EvalModel {
  std::string checkpoint;
  Config config;  // the checkpoint's own config with eval-time overrides on top
  std::unique_ptr<parallel::ProcessGroups> groups;  // under a launch: each rank holds its experts
  model::Gpt model{nullptr};
  std::vector<std::string> experts() const { return config.data.domains; }
  eval::ExpertScorer scorer() { return eval::ExpertScorer(*model, groups.get()); }
  bool writes() const { return !groups || groups->rank() == 0; }  // rank 0 reports
};

EvalModel load_eval_model(const std::string& path, const std::vector<std::string>& overrides) {
  EvalModel m;
  m.checkpoint = checkpoint::resolve_checkpoint(path);
  m.config = with_overrides(checkpoint::checkpoint_config(m.checkpoint), overrides);
  ops::apply_execution_policy(m.config.train);
  m.groups = join_process_groups(m.config);
  auto gpt = model::GptConfig::from(m.config);
  if (m.groups && gpt.n_experts > 0) {
    const auto hosted = m.groups->placement().experts_on(m.groups->rank());
    gpt.local_experts.assign(hosted.begin(), hosted.end());
  }
  m.model = model::Gpt(gpt);
  checkpoint::load_model(m.checkpoint, *m.model, m.config);
  m.model->to(resolve_device(m.config.train.device));
  return m;
}

void require_experts(const EvalModel& m) {
  if (m.config.n_experts() == 0)
    throw Error(m.checkpoint + ": a dense model has no experts to mix");
}

// A text to score: its documents split and ended as `demix data` does for the corpus.
struct ScoredText {
  std::string name;
  data::EvalWindows windows;
  int64_t bytes = 0;  // of the scored tokens' text
};

void require_regular_file(const std::string& path) {
  if (fs::exists(path) && !fs::is_regular_file(path))
    throw Error(path + ": not a regular file (expected a UTF-8 text file to score)");
}

ScoredText text_to_score(const EvalModel& m, const std::string& path) {
  require_regular_file(path);
  const data::Tokenizer tokenizer(m.config.tokenizer.model);
  const auto text = data::read_text(path);
  data::SplitInfo info;
  auto tokens = data::encode_documents(tokenizer, text, &info);
  const data::TokenSplit split(std::move(tokens), info, path);
  ScoredText out{path, data::eval_windows(split, m.config.model.seq_len, m.config.eval.max_tokens)};
  out.bytes = eval::TokenBytes(tokenizer).scored(split, out.windows.targets.numel());
  return out;
}

// The test split of every domain, as --prior mixes them.
std::vector<ScoredText> test_splits(const EvalModel& m) {
  const eval::TokenBytes token_bytes{data::Tokenizer(m.config.tokenizer.model)};
  std::vector<ScoredText> out;
  for (const auto& d : m.config.all_domains()) {
    const auto file = data::open_split(m.config, d, "test");
    ScoredText split{d,
                     data::eval_windows(*file, m.config.model.seq_len, m.config.eval.max_tokens)};
    split.bytes = token_bytes.scored(*file, split.windows.targets.numel());
    out.push_back(split);
  }
  return out;
}

// The route of known-domain scoring: `domain`'s expert (or domain token); a plain dense model
// has one route and takes no domain.
int64_t route_of(const EvalModel& m, const std::string& domain) {
  if (m.config.n_experts() == 0 && !m.config.model.domain_token) return 0;
  const auto& domains = m.config.data.domains;
  const auto it = std::find(domains.begin(), domains.end(), domain);
  if (it == domains.end())
    throw Error("--domain " + (domain.empty() ? std::string("(missing)") : domain) +
                ": expected a training domain of " + m.checkpoint);
  return it - domains.begin();
}

void print_score(const std::string& name, eval::SplitScore score, int64_t bytes) {
  score.bytes = bytes;
  std::printf("%s: %lld tokens, perplexity %.2f, %.4f bits/byte\n", name.c_str(),
              static_cast<long long>(score.tokens), score.perplexity(), score.bits_per_byte());
}

eval::Prior prior_from(const EvalModel& m, const std::string& prior_file) {
  const auto E = m.config.n_experts();
  if (!prior_file.empty()) return eval::read_prior(prior_file, m.experts());
  if (m.config.eval.prior == EvalPrior::kUpdating)
    return eval::Prior::updating(E, m.config.eval.alpha);
  if (m.config.eval.prior == EvalPrior::kCached)
    throw Error(
        "eval.prior=cached: give the cached prior with --prior FILE (demix prior estimate)");
  return eval::Prior::uniform(E);
}

// Writes the report files of --mixture into `out` and draws the PNGs when the venv has matplotlib.
void mixture_report(EvalModel& m, const std::string& out) {
  require_experts(m);
  const auto rows = eval::mixture_table(m.scorer(), m.config);
  // The posterior over positions of one block of the first novel domain (else the first one);
  // collective under a launch, so every rank computes it.
  const auto& domains =
      m.config.data.eval_domains.empty() ? m.config.data.domains : m.config.data.eval_domains;
  const auto file = data::open_split(m.config, domains[0], "test");
  const auto trace = eval::block_posterior_trace(
      m.scorer(), data::eval_windows(*file, m.config.model.seq_len, m.config.model.seq_len),
      eval::Prior::uniform(m.config.n_experts()), m.config.eval.posterior);
  if (!m.writes()) return;
  const auto table = eval::format_mixture_table(rows);
  std::cout << "test perplexity (" << m.config.eval.mix_max_tokens
            << " tokens per domain; cached prior from " << m.config.eval.prior_blocks
            << " valid blocks)\n"
            << table;
  write_file_atomic(out + "/mixture.md", table);
  write_json_file(out + "/mixture.json", eval::mixture_json(rows, m.experts()));
  write_file_atomic(out + "/posterior.csv", eval::posterior_csv(rows, m.experts()));
  if (!m.config.eval.router.empty()) {  // the router's choice per domain, beside the posterior's
    std::vector<std::string> names;
    std::vector<std::vector<double>> weights;
    for (const auto& row : rows) {
      names.push_back(row.domain);
      weights.push_back(row.router_weights);
    }
    write_file_atomic(out + "/router_weights.csv",
                      csv_table("domain", m.experts(), names, weights));
  }

  std::vector<std::string> positions;
  std::vector<std::vector<double>> posteriors;
  const auto probs = trace.to(torch::kDouble).contiguous();
  for (int64_t t = 0; t < probs.size(0); ++t) {
    positions.push_back(std::to_string(t));
    posteriors.emplace_back(probs[t].data_ptr<double>(),
                            probs[t].data_ptr<double>() + probs.size(1));
  }
  write_file_atomic(out + "/posterior_positions.csv",
                    csv_table("position", m.experts(), positions, posteriors));

  const std::string command = ".venv/bin/python scripts/plot_posterior.py " + out +
                              "/posterior.csv " + out + "/posterior_positions.csv --title '" +
                              domains[0] + "'";
  if (fs::exists(".venv/bin/python") && std::system((command + " >/dev/null 2>&1").c_str()) == 0)
    spdlog::info("wrote {}/posterior.png and {}/posterior_positions.png", out, out);
  else
    spdlog::warn("no plots: `{}` failed (matplotlib missing?)", command);
  spdlog::info("wrote {}/mixture.md, mixture.json, posterior.csv, posterior_positions.csv", out);
}

// Known-domain log-probability of every target token of a text file, window by window, as JSON:
// what an exported model (demix export hf) must reproduce. Scored eval.batch_size windows at a
// time, so memory stays bounded however long the text.
void write_token_logprobs(EvalModel& m, const std::string& text, const std::string& domain,
                          const std::string& out) {
  if (m.groups) throw Error("--token-logprobs runs in one process");
  const auto route = route_of(m, domain);
  torch::NoGradGuard no_grad;
  m.model->eval();
  const auto windows = text_to_score(m, text).windows;
  const auto device = m.model->wte->weight.device();
  auto ids = [](const at::Tensor& row) {
    const auto d = row.to(torch::kLong).contiguous();
    return std::vector<int64_t>(d.data_ptr<int64_t>(), d.data_ptr<int64_t>() + d.numel());
  };
  auto values = [](const at::Tensor& row) {
    const auto d = row.to(torch::kDouble).contiguous();
    return std::vector<double>(d.data_ptr<double>(), d.data_ptr<double>() + d.numel());
  };
  const int64_t n = windows.inputs.size(0), batch = m.config.eval.batch_size;
  Json rows = Json::array();
  for (int64_t start = 0; start < n; start += batch) {
    const int64_t count = std::min(batch, n - start);
    const auto inputs = windows.inputs.narrow(0, start, count);
    const auto targets = windows.targets.narrow(0, start, count);
    const model::Routing routing(std::vector<int64_t>(size_t(count), route), device);
    const auto logprobs =
        m.model->token_logprobs(to_device(inputs, device), to_device(targets, device), routing)
            .to(torch::kCPU, torch::kDouble);
    for (int64_t i = 0; i < count; ++i)
      rows.push_back({{"inputs", ids(inputs[i])},
                      {"targets", ids(targets[i])},
                      {"logprobs", values(logprobs[i])}});
  }
  write_json_file(
      out, {{"checkpoint", m.checkpoint}, {"text", text}, {"domain", domain}, {"windows", rows}});
  spdlog::info("wrote {}: {} windows of {} tokens", out, rows.size(), windows.inputs.size(1));
}

// Reports go next to what was named: the run directory for a run, else the checkpoint.
std::string report_dir(const std::string& argument, const EvalModel& m) {
  return fs::exists(fs::path(argument) / checkpoint::layout::kMeta) ? m.checkpoint : argument;
}

// Mixes each text, starting from `prior`, and prints its score.
void mix_texts(EvalModel& m, const std::vector<ScoredText>& texts, const eval::Prior& prior,
               int64_t top_k) {
  int64_t blocks = 0;
  for (const auto& text : texts) blocks += text.windows.inputs.size(0);
  eval::Progress progress("mix", blocks);
  const eval::MixtureOptions options{m.config.eval.posterior, top_k, m.config.eval.batch_size,
                                     &progress};
  for (const auto& text : texts) {
    progress.stage(text.name);
    auto moving = prior;  // an updating prior starts afresh on each text
    const auto result = eval::score_mixture(m.scorer(), text.windows, moving, options);
    if (!m.writes()) continue;
    print_score(text.name, result.score, text.bytes);
    std::printf("  mean block posterior: %s\n",
                eval::format_prior(m.experts(), result.mean_block_posterior).c_str());
  }
}

// Mixes each text with the cluster router (eval.router), prints its score and writes them all to
// the JSON report `out`.
void route_texts(EvalModel& m, const std::vector<ScoredText>& texts, int64_t top_k,
                 const std::string& out) {
  const auto router =
      eval::load_router(m.config.eval.router, m.experts(), m.config.model.vocab_size);
  int64_t blocks = 0;
  for (const auto& text : texts) blocks += text.windows.inputs.size(0);
  eval::Progress progress("route", blocks);
  const auto& ec = m.config.eval;
  const eval::RouterOptions options{top_k, ec.router_every, ec.router_temperature, ec.batch_size,
                                    &progress};
  Json scores = Json::array();
  for (const auto& text : texts) {
    progress.stage(text.name);
    const auto started = std::chrono::steady_clock::now();
    auto result = eval::score_routed(m.scorer(), router, text.windows, options);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    if (!m.writes()) continue;
    result.score.bytes = text.bytes;
    scores.push_back({{"domain", text.name},
                      {"tokens", result.score.tokens},
                      {"perplexity", result.score.perplexity()},
                      {"bits_per_byte", result.score.bits_per_byte()},
                      {"mean_router_weights", result.mean_weights},
                      {"experts_per_block", result.experts_per_block},
                      {"seconds", seconds},
                      {"router_seconds", result.router_seconds}});
    print_score(text.name, result.score, text.bytes);
    std::printf("  mean router weights: %s\n  %.2f expert forwards per block; router %.3f s\n",
                eval::format_prior(m.experts(), result.mean_weights).c_str(),
                result.experts_per_block, result.router_seconds);
  }
  if (!m.writes()) return;
  write_json_file(out, {{"checkpoint", m.checkpoint},
                        {"router", m.config.eval.router},
                        {"top_k", top_k},
                        {"every", ec.router_every},
                        {"temperature", ec.router_temperature},
                        {"experts", m.experts()},
                        {"scores", scores}});
  spdlog::info("wrote {}", out);
}

// Flags that only some modes read: refused where they would be silently ignored.
struct EvalFlags {
  std::string prior, text, domain, token_logprobs, router;
  bool mixture = false;
  bool routed = false;  // --router given, with or without a file
  bool top_k_given = false;
  int64_t top_k = 0;
};

void check_flags(const EvalFlags& f) {
  if (f.top_k < 0)
    throw Error("--top-k " + std::to_string(f.top_k) + ": expected >= 0 (0 = every expert)");
  const bool mixes = !f.mixture && f.token_logprobs.empty() && f.domain.empty() &&
                     (!f.prior.empty() || !f.text.empty() || f.routed);
  if (f.top_k_given && !mixes)
    throw Error(
        "--top-k: only when mixing with --prior, --router or --text (without --domain, "
        "--mixture or --token-logprobs)");
  if (f.routed && (!f.prior.empty() || !f.domain.empty() || !f.token_logprobs.empty()))
    throw Error(
        "--router: mixes by the cluster router; not with --prior, --domain or "
        "--token-logprobs");
  if (f.routed && f.mixture && f.router.empty())
    throw Error("--router with --mixture: give the router file (--router FILE)");
  if (!f.domain.empty() && f.text.empty())
    throw Error("--domain " + f.domain +
                ": only with --text (known-domain scoring of a file, "
                "or --token-logprobs)");
  if (!f.domain.empty() && !f.prior.empty())
    throw Error("--domain " + f.domain + " and --prior: give one (route to one expert, or mix)");
  if (!f.token_logprobs.empty() && f.text.empty())
    throw Error("--token-logprobs: give the text to score with --text");
  if (!f.text.empty()) require_regular_file(f.text);
}

}  // namespace

void add_eval_command(CLI::App& app) {
  struct Args {
    std::string checkpoint, output;
    std::vector<std::string> overrides;
    EvalFlags flags;
  };
  auto args = std::make_shared<Args>();
  auto& f = args->flags;
  auto* command = app.add_subcommand("eval", "perplexity per domain: known-domain top-1, or mixed");
  command->add_option("checkpoint", args->checkpoint, "checkpoint or run directory")->required();
  command->add_option("--set", args->overrides, "override a key: --set eval.max_tokens=0");
  command->add_option("-o,--output", args->output,
                      "report path (default: eval.json, routed_topK.json with --router, or the "
                      "directory mixture/ with --mixture, in the run or checkpoint directory "
                      "given)");
  command->add_flag("--mixture", f.mixture,
                    "every training and novel domain with top-1, uniform, updating and cached "
                    "priors and cached top-k; posterior matrix and plots");
  command->add_option("--prior", f.prior, "mix every domain with this prior (prior.json)");
  auto* top_k = command->add_option("--top-k", f.top_k,
                                    "with --prior or --text: run only the k experts "
                                    "with the largest prior (0 = all)");
  command->add_option("--text", f.text,
                      "a plain text file to score: mixed (DEMix), or through --domain's expert, "
                      "or by a dense model");
  command->add_option("--token-logprobs", f.token_logprobs,
                      "with --text (and --domain): write every token's log-probability under that "
                      "domain's expert (JSON)");
  command->add_option("--domain", f.domain,
                      "with --text: the training domain to route to (no mixing)");
  auto* router = command
                     ->add_option("--router", f.router,
                                  "mix by the cluster router (this file, else eval.router) instead "
                                  "of the posterior, running --top-k experts; with --mixture: add "
                                  "its columns")
                     ->expected(0, 1);
  command->callback([args, top_k, router] {
    auto& f = args->flags;
    f.top_k_given = top_k->count() > 0;
    f.routed = router->count() > 0;
    check_flags(f);
    auto m = load_eval_model(args->checkpoint, args->overrides);
    if (!f.router.empty()) m.config.eval.router = f.router;
    if (f.routed && m.config.eval.router.empty())
      throw Error("--router: no router file (give --router FILE, or set eval.router)");
    const auto dir = report_dir(args->checkpoint, m);
    if (!f.token_logprobs.empty()) {
      write_token_logprobs(m, f.text, f.domain, f.token_logprobs);
      return;
    }
    if (f.mixture) {
      mixture_report(m, args->output.empty() ? dir + "/mixture" : args->output);
      return;
    }
    if (f.routed) {
      require_experts(m);
      route_texts(m, f.text.empty() ? test_splits(m) : std::vector{text_to_score(m, f.text)},
                  f.top_k,
                  args->output.empty() ? dir + "/routed_top" + std::to_string(f.top_k) + ".json"
                                       : args->output);
      return;
    }
    const bool known_domain = m.config.n_experts() == 0 || !f.domain.empty();
    if (!f.text.empty() && known_domain) {
      if (m.groups) throw Error("--text with --domain or a dense model runs in one process");
      const auto text = text_to_score(m, f.text);
      eval::Progress progress("eval", text.windows.inputs.size(0));
      progress.stage(text.name);
      m.model->eval();
      print_score(text.name,
                  eval::score_windows(*m.model, text.windows, route_of(m, f.domain),
                                      m.config.eval.batch_size, &progress),
                  text.bytes);
      return;
    }
    if (!f.text.empty() || !f.prior.empty()) {
      require_experts(m);
      const auto prior = prior_from(m, f.prior);  // read before any text is scored
      mix_texts(m, f.text.empty() ? test_splits(m) : std::vector{text_to_score(m, f.text)}, prior,
                f.top_k);
      return;
    }
    if (m.groups)
      throw Error(
          "demix eval: known-domain evaluation runs in one process; under a launch use "
          "--mixture, --prior or --text");
    const auto scores =
        eval::evaluate(*m.model, m.config, m.config.eval.splits, m.config.eval.max_tokens);
    std::cout << eval::format_table(scores);
    if (m.config.n_experts() > 0 && !m.config.data.eval_domains.empty())
      spdlog::info("novel domains need mixing: demix eval {} --mixture", args->checkpoint);
    const auto path = args->output.empty() ? dir + "/eval.json" : args->output;
    auto report = eval::to_json(scores);
    report["checkpoint"] = m.checkpoint;
    write_json_file(path, report);
    spdlog::info("wrote {}", path);
  });
}

void add_prior_command(CLI::App& app) {
  struct Args {
    std::string checkpoint, domain, text, output = "prior.json";
    std::vector<std::string> overrides;
  };
  auto args = std::make_shared<Args>();
  auto* prior = app.add_subcommand("prior", "domain priors over the experts");
  prior->require_subcommand(1);
  auto* estimate = prior->add_subcommand(
      "estimate", "the cached prior: the updating prior run over held-out blocks, then frozen");
  estimate->add_option("checkpoint", args->checkpoint, "checkpoint or run directory")->required();
  auto* domain =
      estimate->add_option("--domain", args->domain, "a corpus domain (its valid split)");
  auto* text = estimate->add_option("--text", args->text, "or a plain text file");
  domain->excludes(text);
  estimate->add_option("-o,--output", args->output, "prior file to write")->capture_default_str();
  estimate->add_option("--set", args->overrides,
                       "override a key: --set eval.prior_blocks=50 --set eval.alpha=0.3");
  estimate->callback([args] {
    if (args->domain.empty() == args->text.empty())
      throw Error("demix prior estimate: give exactly one of --domain or --text");
    auto m = load_eval_model(args->checkpoint, args->overrides);
    require_experts(m);
    const auto held_out =
        args->text.empty() ? data::eval_windows(*data::open_split(m.config, args->domain, "valid"),
                                                m.config.model.seq_len, 0)
                           : text_to_score(m, args->text).windows;
    const eval::MixtureOptions options{m.config.eval.posterior, 0, m.config.eval.batch_size};
    const auto blocks = std::min<int64_t>(m.config.eval.prior_blocks, held_out.inputs.size(0));
    const auto prior =
        eval::estimate_prior(m.scorer(), held_out, blocks, m.config.eval.alpha, options);
    if (!m.writes()) return;
    const auto source = args->text.empty() ? args->domain + "/valid" : args->text;
    eval::write_prior(args->output, prior, m.experts(), source, blocks);
    std::printf("prior of %s over %lld blocks: %s\nwrote %s\n", source.c_str(),
                static_cast<long long>(blocks),
                eval::format_prior(m.experts(), prior.probs()).c_str(), args->output.c_str());
  });
}

}  // namespace demix::cli
