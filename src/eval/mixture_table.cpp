#include "demix/eval/mixture_table.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <optional>

#include "demix/core/csv.h"
#include "demix/core/json.h"
#include "demix/data/corpus.h"
#include "demix/eval/mixture.h"
#include "demix/eval/routed_mixture.h"

namespace demix::eval {
namespace {

template <class F>
double timed(F&& f) {
  const auto start = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

std::vector<MixtureRow> mixture_table(const ExpertScorer& scorer, const Config& config) {
  const auto& ec = config.eval;
  const auto E = int64_t(config.data.domains.size());
  const auto domains = config.all_domains();
  // The test windows and the held-out (valid) windows of domain i, one domain at a time.
  auto test_windows = [&](size_t i) {
    return data::eval_windows(*data::open_split(config, domains[i], "test"), config.model.seq_len,
                              ec.mix_max_tokens);
  };
  auto held_out_windows = [&](size_t i) {
    return data::eval_windows(*data::open_split(config, domains[i], "valid"), config.model.seq_len,
                              0);
  };
  std::optional<cluster::ClusterRouter> router;
  if (!ec.router.empty())
    router.emplace(load_router(ec.router, config.data.domains, config.model.vocab_size));
  int64_t blocks = 0;  // for the progress total
  for (size_t i = 0; i < domains.size(); ++i) {
    const int64_t variants =
        (int64_t(i) < E) + 3 + (ec.top_k < E) + (router ? 1 + (ec.top_k > 1) : 0);  // as below
    blocks += variants * test_windows(i).inputs.size(0) +
              std::min(ec.prior_blocks, held_out_windows(i).inputs.size(0));
  }
  Progress progress("mixture", blocks);
  MixtureOptions options{ec.posterior, 0, ec.batch_size, &progress};
  std::vector<MixtureRow> rows;
  for (size_t i = 0; i < domains.size(); ++i) {
    MixtureRow row;
    row.domain = domains[i];
    row.trained = int64_t(i) < E;
    const auto windows = test_windows(i);
    auto add = [&](const std::string& name, Prior prior, int64_t top_k) {
      MixtureOptions o = options;
      o.top_k = top_k;
      progress.stage(row.domain + " " + name);
      MixtureScore score;
      const double seconds = timed([&] { score = score_mixture(scorer, windows, prior, o); });
      row.tokens = score.score.tokens;
      row.variants.push_back({name, score.score.perplexity(), seconds});
    };

    if (row.trained) {  // known-domain top-1: a one-hot prior with k = 1 runs only expert i
      std::vector<double> one_hot(size_t(E), 0.0);
      one_hot[i] = 1.0;
      add("top1", Prior::fixed(one_hot), 1);
    } else {
      row.variants.push_back({"top1", std::numeric_limits<double>::quiet_NaN(), 0});
    }
    add("uniform", Prior::uniform(E), 0);
    add("updating", Prior::updating(E, ec.alpha), 0);
    progress.stage(row.domain + " cached prior estimate");
    const auto cached =
        estimate_prior(scorer, held_out_windows(i), ec.prior_blocks, ec.alpha, options);
    row.cached_prior = cached.probs();
    add("cached", cached, 0);
    if (ec.top_k < E) add("cached_top" + std::to_string(ec.top_k), cached, ec.top_k);
    std::vector<int64_t> router_ks;
    if (router)
      router_ks = ec.top_k > 1 ? std::vector<int64_t>{1, ec.top_k} : std::vector<int64_t>{1};
    for (const auto k : router_ks) {
      const auto name = "router_top" + std::to_string(k);
      progress.stage(row.domain + " " + name);
      const RouterOptions o{k, ec.router_every, ec.router_temperature, ec.batch_size, &progress};
      RoutedScore score;
      const double seconds = timed([&] { score = score_routed(scorer, *router, windows, o); });
      row.variants.push_back(
          {name, score.score.perplexity(), seconds, score.router_seconds, score.experts_per_block});
      row.router_weights = score.mean_weights;
    }
    rows.push_back(row);
  }
  return rows;
}

std::string format_mixture_table(const std::vector<MixtureRow>& rows) {
  if (rows.empty()) return "";
  std::string out = "| domain | role |";
  std::string rule = "|---|---|";
  for (const auto& v : rows[0].variants) {
    out += " " + v.name + " |";
    rule += "---:|";
  }
  out += "\n" + rule + "\n";
  char cell[64];
  for (const auto& row : rows) {
    out += "| " + row.domain + " | " + (row.trained ? "train" : "novel") + " |";
    for (const auto& v : row.variants) {
      if (std::isnan(v.perplexity))
        out += " - |";
      else {
        std::snprintf(cell, sizeof(cell), " %.2f |", v.perplexity);
        out += cell;
      }
    }
    out += "\n";
  }
  // Mixing cost relative to one top-1 pass, over the training domains (which have top-1).
  std::vector<double> seconds(rows[0].variants.size(), 0.0);
  for (const auto& row : rows)
    if (row.trained)
      for (size_t v = 0; v < row.variants.size(); ++v) seconds[v] += row.variants[v].seconds;
  out += "| *time / top-1* | |";
  for (size_t v = 0; v < seconds.size(); ++v) {
    std::snprintf(cell, sizeof(cell), " %.2fx |", seconds[v] / seconds[0]);
    out += cell;
  }
  return out + "\n";
}

std::string posterior_csv(const std::vector<MixtureRow>& rows,
                          const std::vector<std::string>& experts) {
  std::vector<std::string> labels;
  std::vector<std::vector<double>> values;
  for (const auto& row : rows) {
    labels.push_back(row.domain);
    values.push_back(row.cached_prior);
  }
  return csv_table("domain", experts, labels, values);
}

Json mixture_json(const std::vector<MixtureRow>& rows, const std::vector<std::string>& experts) {
  Json items = Json::array();
  for (const auto& row : rows) {
    Json perplexity = Json::object(), seconds = Json::object(), router = Json::object();
    for (const auto& v : row.variants) {
      perplexity[v.name] = v.perplexity;
      seconds[v.name] = v.seconds;
      if (v.name.rfind("router", 0) == 0)
        router[v.name] = {{"router_seconds", v.router_seconds},
                          {"experts_per_block", v.experts_per_block}};
    }
    items.push_back({{"domain", row.domain},
                     {"role", row.trained ? "train" : "novel"},
                     {"tokens", row.tokens},
                     {"perplexity", perplexity},
                     {"seconds", seconds},
                     {"cached_prior", row.cached_prior},
                     {"router", router},
                     {"router_weights", row.router_weights}});
  }
  return Json{{"experts", experts}, {"domains", items}};
}

}  // namespace demix::eval
