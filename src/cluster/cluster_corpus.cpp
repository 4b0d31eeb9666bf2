#include "demix/cluster/cluster_corpus.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <numeric>
#include <random>

#include "demix/cluster/balanced_kmeans.h"
#include "demix/core/error.h"
#include "demix/core/file.h"
#include "demix/core/json.h"
#include "demix/data/corpus.h"
#include "demix/data/tokenizer.h"

namespace demix::cluster {
namespace {
namespace fs = std::filesystem;

// One document of an encoded split: its tokens without the end-of-text token.
struct DocRef {
  uint32_t split;  // index into Documents::splits
  uint32_t length;
  uint64_t start;
};

struct LabelledSplit {
  std::string domain, split;
  int64_t label;  // index of the domain among config.all_domains()
  std::unique_ptr<data::TokenSplit> tokens;
};

// The documents of the encoded splits, found by their end-of-text tokens.
class Documents {
 public:
  Documents(const Config& config, int64_t eos) : eos_(eos) {
    const auto domains = config.all_domains();
    for (size_t d = 0; d < domains.size(); ++d)
      for (const char* split : {"train", "valid", "test"}) {
        // training domains' train splits must be there (open_split says so); the rest may not
        const bool required = d < config.data.domains.size() && std::string(split) == "train";
        if (!required && (std::string(split) == "train" ||
                          !fs::exists(data::split_dir(config, domains[d], split))))
          continue;
        splits.push_back(
            {domains[d], split, int64_t(d), data::open_split(config, domains[d], split)});
      }
  }

  // Every document of the splits named `split`, in order.
  std::vector<DocRef> of(const std::string& split) const {
    std::vector<DocRef> out;
    std::vector<int64_t> buffer(size_t(1) << 20);
    for (size_t s = 0; s < splits.size(); ++s) {
      if (splits[s].split != split) continue;
      const auto& tokens = *splits[s].tokens;
      uint64_t doc_start = 0;
      for (uint64_t pos = 0; pos < tokens.size(); pos += buffer.size()) {
        const auto n = std::min<uint64_t>(buffer.size(), tokens.size() - pos);
        tokens.read(pos, n, buffer.data());
        for (uint64_t i = 0; i < n; ++i)
          if (buffer[i] == eos_) {
            out.push_back({uint32_t(s), uint32_t(pos + i - doc_start), doc_start});
            doc_start = pos + i + 1;
          }
      }
      if (doc_start < tokens.size())  // a last document without its end-of-text token
        out.push_back({uint32_t(s), uint32_t(tokens.size() - doc_start), doc_start});
    }
    return out;
  }

  std::vector<int64_t> tokens(const DocRef& doc) const {
    std::vector<int64_t> out(doc.length);
    splits[doc.split].tokens->read(doc.start, doc.length, out.data());
    return out;
  }

  std::vector<TermCounts> counts(const std::vector<DocRef>& docs, size_t begin, size_t end) const {
    std::vector<TermCounts> out(end - begin);
    at::parallel_for(0, int64_t(out.size()), 16, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const auto t = tokens(docs[begin + size_t(i)]);
        out[size_t(i)] = TermCounts::of(t.data(), t.size());
      }
    });
    return out;
  }

  std::vector<LabelledSplit> splits;

 private:
  int64_t eos_;
};

std::vector<DocRef> shuffled(std::vector<DocRef> docs, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::shuffle(docs.begin(), docs.end(), rng);
  return docs;
}

// The fitted features and the sample they were fitted on.
struct Fit {
  Featurizer featurizer;
  at::Tensor sample_features;  // (S, D)
};

Fit fit_features(const Config& config, const Documents& docs, const std::vector<DocRef>& order) {
  const auto& c = config.cluster;
  const auto n = std::min<size_t>(size_t(c.sample_documents), order.size());
  if (int64_t(n) < c.k)
    throw Error("cluster.k=" + std::to_string(c.k) + ": only " + std::to_string(n) +
                " training documents to cluster");
  spdlog::info("fitting tf-idf{} on {} of {} training documents", c.svd_dims ? " and SVD" : "", n,
               order.size());
  const auto counts = docs.counts(order, 0, n);
  auto featurizer = Featurizer::fit(counts, config.model.vocab_size, c.svd_dims, uint64_t(c.seed));
  auto features = featurizer.transform(counts);
  return {std::move(featurizer), features};
}

// How many of the next `m` documents each cluster takes so that, with those, every cluster holds
// floor or ceil of the total / k: the clusters that already hold one more keep it first.
std::vector<int64_t> chunk_sizes(const std::vector<int64_t>& held, int64_t m) {
  const auto k = int64_t(held.size());
  const auto total = std::accumulate(held.begin(), held.end(), int64_t(0)) + m;
  std::vector<int64_t> order(static_cast<size_t>(k));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return held[size_t(a)] > held[size_t(b)]; });
  std::vector<int64_t> sizes(static_cast<size_t>(k));
  for (int64_t r = 0; r < k; ++r) {
    const auto j = size_t(order[size_t(r)]);
    sizes[j] = total / k + (r < total % k) - held[j];
  }
  return sizes;
}

// The tokens each cluster should take from a chunk of `chunk` tokens so that all clusters move
// towards an equal share of everything assigned: a cluster already over its share takes none.
std::vector<double> chunk_loads(const std::vector<int64_t>& held, double chunk) {
  const double share =
      (double(std::accumulate(held.begin(), held.end(), int64_t(0))) + chunk) / double(held.size());
  std::vector<double> loads;
  double total = 0;
  for (auto h : held) total += loads.emplace_back(std::max(0.0, share - double(h)));
  for (auto& l : loads) l *= chunk / total;
  return loads;
}

std::string cluster_name(int64_t j) {
  char name[32];
  std::snprintf(name, sizeof(name), "cluster_%02lld", static_cast<long long>(j));
  return name;
}

// Text files of the new corpus, one per domain and split, documents separated as in any corpus.
class TextWriter {
 public:
  explicit TextWriter(std::string root) : root_(std::move(root)) {}
  void write(const std::string& domain, const std::string& split, const std::string& text) {
    if (text.find(data::kDocumentSeparator) != std::string::npos)
      throw Error("a document of " + domain + "/" + split +
                  " holds the document separator \\n\\f\\n: it cannot be written as a text corpus");
    auto& file = files_[domain + "/" + split];
    if (!file) {
      fs::create_directories(root_ + "/" + domain);
      const auto path = root_ + "/" + domain + "/" + split + ".txt";
      file.reset(std::fopen(path.c_str(), "wb"));
      if (!file) throw Error(path + ": cannot open for writing");
    }
    std::fwrite(text.data(), 1, text.size(), file.get());
    std::fwrite(data::kDocumentSeparator.data(), 1, data::kDocumentSeparator.size(), file.get());
    if (std::ferror(file.get()))
      throw Error(root_ + "/" + domain + "/" + split + ".txt: write failed");
  }
  void close() {
    for (auto& [name, file] : files_)
      if (std::fflush(file.get()) != 0 || std::ferror(file.get()))
        throw Error(root_ + "/" + name + ".txt: write failed (disk full?)");
    files_.clear();
  }

 private:
  std::string root_;
  struct Close {
    void operator()(std::FILE* f) const { std::fclose(f); }
  };
  std::map<std::string, std::unique_ptr<std::FILE, Close>> files_;
};

std::vector<std::string> decode_all(const data::Tokenizer& tokenizer, const Documents& docs,
                                    const std::vector<DocRef>& refs, size_t begin, size_t end) {
  std::vector<std::string> out(end - begin);
  at::parallel_for(0, int64_t(out.size()), 16, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i)
      out[size_t(i)] = tokenizer.decode(docs.tokens(refs[begin + size_t(i)]));
  });
  return out;
}

// Normalised mutual information of two labellings, from their contingency table (arithmetic
// mean of the entropies, as scikit-learn's default).
double normalized_mutual_information(const std::vector<std::vector<int64_t>>& table) {
  double n = 0;
  std::vector<double> rows(table.size(), 0), cols(table.empty() ? 0 : table[0].size(), 0);
  for (size_t i = 0; i < table.size(); ++i)
    for (size_t j = 0; j < cols.size(); ++j) {
      rows[i] += double(table[i][j]);
      cols[j] += double(table[i][j]);
      n += double(table[i][j]);
    }
  auto entropy = [n](const std::vector<double>& counts) {
    double h = 0;
    for (auto c : counts)
      if (c > 0) h -= c / n * std::log(c / n);
    return h;
  };
  double mi = 0;
  for (size_t i = 0; i < table.size(); ++i)
    for (size_t j = 0; j < cols.size(); ++j)
      if (table[i][j] > 0) {
        const double p = double(table[i][j]) / n;
        mi += p * std::log(p * n * n / (rows[i] * cols[j]));
      }
  const double mean_entropy = (entropy(rows) + entropy(cols)) / 2;
  return mean_entropy > 0 ? std::max(0.0, mi / mean_entropy) : 1.0;
}

// The most heavily weighted vocabulary entries of a centre, mapped back to token space.
std::vector<std::string> top_terms(const Featurizer& f, const at::Tensor& centre,
                                   const data::Tokenizer& tokenizer, int64_t count) {
  const auto terms = f.has_svd() ? centre.unsqueeze(0).mm(f.components())[0] : centre;
  const auto top = std::get<1>(terms.topk(std::min<int64_t>(count, terms.numel()))).contiguous();
  std::vector<std::string> out;
  for (int64_t i = 0; i < top.numel(); ++i)
    out.push_back(tokenizer.piece(top.data_ptr<int64_t>()[i]));
  return out;
}

std::string purity_markdown(const std::vector<std::string>& clusters,
                            const std::vector<std::string>& labels,
                            const std::vector<std::vector<int64_t>>& table, double purity,
                            double nmi) {
  std::string out = "| cluster |";
  for (const auto& l : labels) out += " " + l + " |";
  out += " documents |\n|---|";
  for (size_t j = 0; j <= labels.size(); ++j) out += "---:|";
  out += "\n";
  for (size_t i = 0; i < clusters.size(); ++i) {
    out += "| " + clusters[i] + " |";
    int64_t total = 0;
    for (auto c : table[i]) {
      out += " " + std::to_string(c) + " |";
      total += c;
    }
    out += " " + std::to_string(total) + " |\n";
  }
  char summary[128];
  std::snprintf(summary, sizeof(summary), "\npurity %.4f, normalised mutual information %.4f\n",
                purity, nmi);
  return out + summary;
}

}  // namespace

void write_cluster_corpus(const Config& config, const std::string& out_dir) {
  const auto& c = config.cluster;
  if (fs::exists(out_dir))
    throw Error(out_dir + ": exists (choose another --output, or remove it)");
  const data::Tokenizer tokenizer(config.tokenizer.model);
  const Documents docs(config, tokenizer.eos_id());
  const auto train = shuffled(docs.of("train"), uint64_t(c.seed));
  const auto fit = fit_features(config, docs, train);
  spdlog::info("balanced k-means, k={}, on {} documents of {} features", c.k,
               fit.sample_features.size(0), fit.sample_features.size(1));
  const bool by_tokens = c.balance == ClusterBalance::kTokens;
  std::vector<double> sample_tokens;
  for (int64_t i = 0; by_tokens && i < fit.sample_features.size(0); ++i)
    sample_tokens.push_back(std::max(1.0, double(train[size_t(i)].length)));
  const auto kmeans =
      balanced_kmeans(fit.sample_features, c.k, c.iterations, uint64_t(c.seed), sample_tokens);
  const ClusterRouter router(fit.featurizer, kmeans.centres, [&] {
    std::vector<std::string> names;
    for (int64_t j = 0; j < c.k; ++j) names.push_back(cluster_name(j));
    return names;
  }());

  const auto tmp = out_dir + ".tmp-" + std::to_string(::getpid());
  fs::remove_all(tmp);
  try {
    TextWriter writer(tmp);
    const auto& labels = config.data.domains;  // of the training documents
    std::vector<std::vector<int64_t>> table(size_t(c.k), std::vector<int64_t>(labels.size(), 0));
    std::vector<int64_t> held(size_t(c.k), 0), tokens(size_t(c.k), 0);
    // Training documents: balanced chunk by chunk, so the sizes stay within 1 overall.
    for (size_t begin = 0; begin < train.size(); begin += size_t(c.chunk_documents)) {
      const auto end = std::min(train.size(), begin + size_t(c.chunk_documents));
      const auto x = fit.featurizer.transform(docs.counts(train, begin, end));
      const auto cost = squared_distances(x, kmeans.centres);
      std::vector<int64_t> assigned;
      if (by_tokens) {
        std::vector<double> weights;
        for (size_t i = begin; i < end; ++i)
          weights.push_back(std::max(1.0, double(train[i].length)));
        assigned = weighted_balanced_assignment(
            cost, weights,
            chunk_loads(tokens, std::accumulate(weights.begin(), weights.end(), 0.0)));
      } else {
        assigned = balanced_assignment(cost, chunk_sizes(held, int64_t(end - begin)));
      }
      const auto texts = decode_all(tokenizer, docs, train, begin, end);
      for (size_t i = 0; i < texts.size(); ++i) {
        const auto j = size_t(assigned[i]);
        const auto& doc = train[begin + i];
        writer.write(cluster_name(int64_t(j)), "train", texts[i]);
        ++held[j];
        tokens[j] += doc.length;
        ++table[j][size_t(docs.splits[doc.split].label)];
      }
      spdlog::info("assigned {} of {} training documents", end, train.size());
    }
    // Held-out documents: the nearest centre, as the router would choose; and each source
    // domain's held-out text as it was, to evaluate on.
    std::map<std::string, std::vector<int64_t>> held_out;  // split -> documents per cluster
    for (const char* split : {"valid", "test"}) {
      const auto refs = docs.of(split);
      held_out[split].assign(size_t(c.k), 0);
      for (size_t begin = 0; begin < refs.size(); begin += size_t(c.chunk_documents)) {
        const auto end = std::min(refs.size(), begin + size_t(c.chunk_documents));
        const auto near = nearest(squared_distances(
            fit.featurizer.transform(docs.counts(refs, begin, end)), kmeans.centres));
        const auto texts = decode_all(tokenizer, docs, refs, begin, end);
        for (size_t i = 0; i < texts.size(); ++i) {
          const auto& source = docs.splits[refs[begin + i].split];
          if (source.label < int64_t(config.data.domains.size())) {
            writer.write(cluster_name(near[i]), split, texts[i]);
            ++held_out[split][size_t(near[i])];
          }
          writer.write(source.domain, split, texts[i]);
        }
      }
    }
    writer.close();
    for (int64_t j = 0; j < c.k; ++j)
      for (const char* split : {"valid", "test"})
        if (held_out[split][size_t(j)] == 0)
          throw Error(cluster_name(j) + ": no " + split +
                      " document is nearest to its centre; a corpus needs held-out text for "
                      "every domain (try a smaller cluster.k)");

    int64_t total = 0, majority = 0;
    for (const auto& row : table) {
      total += std::accumulate(row.begin(), row.end(), int64_t(0));
      majority += *std::max_element(row.begin(), row.end());
    }
    const double purity = double(majority) / double(total);
    const double nmi = normalized_mutual_information(table);
    Json clusters = Json::array();
    for (int64_t j = 0; j < c.k; ++j) {
      Json by_label = Json::object();
      for (size_t l = 0; l < labels.size(); ++l)
        if (table[size_t(j)][l] > 0) by_label[labels[l]] = table[size_t(j)][l];
      clusters.push_back(
          {{"name", cluster_name(j)},
           {"train_documents", held[size_t(j)]},
           {"train_tokens", tokens[size_t(j)]},
           {"valid_documents", held_out["valid"][size_t(j)]},
           {"test_documents", held_out["test"][size_t(j)]},
           {"top_terms", top_terms(fit.featurizer, kmeans.centres[j], tokenizer, 12)},
           {"labels", by_label}});
    }
    write_json_file(
        tmp + "/MANIFEST.json",
        {{"kind", "demix cluster"},
         {"source", config.data.sources.empty() ? config.data.corpus : std::string("data.sources")},
         {"tokens_dir", config.data.tokens_dir},
         {"tokenizer", config.tokenizer.model},
         {"k", c.k},
         {"seed", c.seed},
         {"svd_dims", c.svd_dims},
         {"balance", to_string(c.balance)},
         {"sample_documents", fit.sample_features.size(0)},
         {"kmeans_iterations", kmeans.iterations},
         {"train_documents", total},
         {"purity", purity},
         {"normalized_mutual_information", nmi},
         {"labels", labels},
         {"clusters", clusters}});
    std::vector<std::string> names;
    for (int64_t j = 0; j < c.k; ++j) names.push_back(cluster_name(j));
    write_file_atomic(tmp + "/purity.md", purity_markdown(names, labels, table, purity, nmi));
    router.save(tmp + "/router.safetensors", "demix cluster of " + config.data.tokens_dir);

    Config out = config;
    out.data.corpus = out_dir;
    out.data.sources.clear();
    out.data.domains = names;
    out.data.eval_domains = config.all_domains();
    out.data.tokens_dir = out_dir + "/tokens";
    out.data.dedup = false;  // the clusters' held-out text is also each source domain's
    out.eval.router = out_dir + "/router.safetensors";
    out.train.out_dir = "runs/" + fs::path(out_dir).filename().string();
    write_file_atomic(tmp + "/config.yaml", to_yaml(out));
    fs::rename(tmp, out_dir);
    spdlog::info("wrote {}: {} clusters of {} training documents, purity {:.3f}, NMI {:.3f}",
                 out_dir, c.k, total, purity, nmi);
  } catch (...) {
    std::error_code ignored;
    fs::remove_all(tmp, ignored);
    throw;
  }
}

ClusterRouter fit_domain_router(const Config& config) {
  const data::Tokenizer tokenizer(config.tokenizer.model);
  const Documents docs(config, tokenizer.eos_id());
  const auto train = shuffled(docs.of("train"), uint64_t(config.cluster.seed));
  const auto fit = fit_features(config, docs, train);
  const auto E = int64_t(config.data.domains.size());
  auto sums = at::zeros({E, fit.featurizer.dims()}, at::kDouble);
  std::vector<int64_t> counts(size_t(E), 0);
  for (size_t begin = 0; begin < train.size(); begin += size_t(config.cluster.chunk_documents)) {
    const auto end = std::min(train.size(), begin + size_t(config.cluster.chunk_documents));
    std::vector<int64_t> label(end - begin);
    for (size_t i = begin; i < end; ++i) {
      label[i - begin] = docs.splits[train[i].split].label;
      ++counts[size_t(label[i - begin])];
    }
    sums.index_add_(0, at::tensor(label, at::kLong),
                    fit.featurizer.transform(docs.counts(train, begin, end)).to(at::kDouble));
  }
  const auto centres = sums / at::tensor(counts, at::kDouble).unsqueeze(1);
  return ClusterRouter(fit.featurizer, centres.to(at::kFloat), config.data.domains);
}

}  // namespace demix::cluster
