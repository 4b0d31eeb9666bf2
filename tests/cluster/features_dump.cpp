// Writes the cluster features of a small synthetic corpus as JSON, for features_check.py to
// recompute in float64 NumPy: token ids, idf, tf-idf rows, SVD components and features, k-means
// centres, squared distances and router weights.
//   demix_features_dump OUT.json

#include <ATen/ATen.h>

#include <iostream>
#include <random>

#include "demix/cluster/balanced_kmeans.h"
#include "demix/cluster/features.h"
#include "demix/cluster/router.h"
#include "demix/core/json.h"

using namespace demix;
using namespace demix::cluster;

namespace {

std::vector<double> values(const at::Tensor& t) {
  const auto d = t.to(at::kDouble).contiguous().view(-1);
  return {d.data_ptr<double>(), d.data_ptr<double>() + d.numel()};
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: demix_features_dump OUT.json\n";
    return 2;
  }
  constexpr int64_t kVocab = 60, kTopics = 3, kDims = 3, kDocs = 90;
  constexpr double kTemperature = 0.1;
  std::mt19937_64 rng(17);
  std::vector<std::vector<int64_t>> docs;
  std::vector<TermCounts> counts;
  for (int64_t i = 0; i < kDocs; ++i) {
    // topic 0, 1, 2 for 15, 30, 45 documents (distinct singular values, then a clear gap): each
    // draws from its own 20 ids with a Zipf-like skew, plus 15% noise
    const int64_t topic = i < 15 ? 0 : i < 45 ? 1 : 2;
    std::vector<int64_t> d;
    for (int64_t t = 0, length = 10 + int64_t(rng() % 40); t < length; ++t) {
      const auto r = rng() % 100;
      d.push_back(r < 15 ? int64_t(rng() % kVocab)
                         : topic * 20 + int64_t((rng() % 20) * (rng() % 20) / 19));
    }
    counts.push_back(TermCounts::of(d.data(), d.size()));
    docs.push_back(std::move(d));
  }
  const auto plain = Featurizer::fit(counts, kVocab, 0, 1);
  const auto svd = Featurizer::fit(counts, kVocab, kDims, 1);
  const auto features = svd.transform(counts);
  const auto km = balanced_kmeans(features, kTopics, 20, 4);
  const ClusterRouter router(svd, km.centres, {"c0", "c1", "c2"});
  Json weights = Json::array();
  const auto f64 = features.to(at::kDouble).contiguous();
  for (int64_t i = 0; i < kDocs; ++i)
    weights.push_back(router.weights(f64[i].data_ptr<double>(), kTemperature));
  write_json_file(argv[1], {{"vocab", kVocab},
                            {"dims", kDims},
                            {"temperature", kTemperature},
                            {"docs", docs},
                            {"idf", values(plain.idf())},
                            {"tfidf", values(plain.transform(counts))},
                            {"components", values(svd.components())},
                            {"features", values(features)},
                            {"centres", values(km.centres)},
                            {"labels", km.labels},
                            {"distances", values(squared_distances(features, km.centres))},
                            {"weights", weights}});
  return 0;
}
