#include "demix/cluster/router.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>

#include "demix/core/error.h"
#include "demix/core/json.h"
#include "demix/core/safetensors.h"

namespace demix::cluster {

ClusterRouter::ClusterRouter(Featurizer featurizer, at::Tensor centres,
                             std::vector<std::string> experts)
    : featurizer_(std::move(featurizer)),
      centres_(centres.to(at::kFloat).contiguous()),
      experts_(std::move(experts)) {
  if (centres_.dim() != 2 || centres_.size(0) != int64_t(experts_.size()) ||
      centres_.size(1) != featurizer_.dims())
    throw Error("router: centres of shape " + std::to_string(centres_.size(0)) + "x" +
                std::to_string(centres_.dim() == 2 ? centres_.size(1) : 0) + ", expected " +
                std::to_string(experts_.size()) + "x" + std::to_string(featurizer_.dims()));
  const auto norms = centres_.to(at::kDouble).pow(2).sum(1).contiguous();
  centre_norms_.assign(norms.data_ptr<double>(), norms.data_ptr<double>() + norms.numel());
}

std::vector<double> ClusterRouter::weights(const double* features, double temperature) const {
  const auto E = int64_t(experts_.size()), D = featurizer_.dims();
  const auto* c = centres_.data_ptr<float>();
  double norm = 0;
  for (int64_t d = 0; d < D; ++d) norm += features[d] * features[d];
  std::vector<double> logits(static_cast<size_t>(E));
  for (int64_t j = 0; j < E; ++j) {
    double dot = 0;
    for (int64_t d = 0; d < D; ++d) dot += features[d] * c[j * D + d];
    const double squared = std::max(0.0, norm - 2 * dot + centre_norms_[size_t(j)]);
    logits[size_t(j)] = -squared / temperature;
  }
  const double top = *std::max_element(logits.begin(), logits.end());
  double total = 0;
  for (auto& l : logits) total += (l = std::exp(l - top));
  for (auto& l : logits) l /= total;
  return logits;
}

std::vector<double> top_k_weights(const std::vector<double>& weights, int64_t k) {
  const auto E = int64_t(weights.size());
  if (k <= 0 || k >= E) return weights;
  std::vector<int64_t> order(static_cast<size_t>(E));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return weights[size_t(a)] > weights[size_t(b)]; });
  std::vector<double> out(weights.size(), 0.0);
  double total = 0;
  for (int64_t i = 0; i < k; ++i) {
    const auto j = size_t(order[size_t(i)]);
    total += out[j] = weights[j];
  }
  for (auto& w : out) w /= total;
  return out;
}

namespace {
constexpr const char* kFormat = "demix-cluster-router-1";
}

void ClusterRouter::save(const std::string& path, const std::string& source) const {
  TensorDict tensors{{"idf", featurizer_.idf()}, {"centres", centres_}};
  if (featurizer_.has_svd()) tensors["components"] = featurizer_.components();
  save_safetensors(path, tensors,
                   {{"format", kFormat}, {"experts", Json(experts_).dump()}, {"source", source}});
}

ClusterRouter ClusterRouter::load(const std::string& path) {
  std::map<std::string, std::string> meta;
  try {
    meta = safetensors_metadata(path);
  } catch (const Error& e) {
    throw Error(std::string(e.what()) +
                " (expected a router file of demix cluster or demix router)");
  }
  const auto format = meta.find("format");
  if (format == meta.end() || format->second != kFormat)
    throw Error(path + ": not a router file (expected format " + std::string(kFormat) +
                "; write one with demix cluster or demix router)");
  auto tensors = load_safetensors(path);
  for (const char* name : {"idf", "centres"})
    if (!tensors.count(name)) throw Error(path + ": router file without tensor '" + name + "'");
  std::vector<std::string> experts;
  try {
    experts = Json::parse(meta.at("experts")).get<std::vector<std::string>>();
  } catch (const std::exception&) {
    throw Error(path + ": 'experts' metadata is not a list of names");
  }
  const auto components = tensors.count("components") ? tensors["components"] : at::Tensor();
  if (components.defined() &&
      (components.dim() != 2 || components.size(1) != tensors["idf"].size(0)))
    throw Error(path + ": components do not match the idf's vocabulary");
  try {
    return ClusterRouter(Featurizer(tensors["idf"], components), tensors["centres"], experts);
  } catch (const Error& e) {
    throw Error(path + ": " + e.what());
  }
}

RouterContext::RouterContext(const Featurizer& featurizer)
    : featurizer_(featurizer),
      counts_(size_t(featurizer.vocab_size()), 0),
      sum_(size_t(featurizer.dims()), 0.0) {}

void RouterContext::add(int64_t token) {
  if (token < 0 || token >= int64_t(counts_.size())) return;  // outside the fitted vocabulary
  const auto id = uint32_t(token);
  auto& c = counts_[id];
  const double tf_change = sublinear_tf(c + 1) - sublinear_tf(c);
  ++c;
  const double weight = tf_change * double(featurizer_.idf().data_ptr<float>()[id]);
  featurizer_.accumulate(&id, &weight, 1, sum_.data());
}

std::vector<double> RouterContext::features() const {
  auto out = sum_;
  normalize(out.data(), int64_t(out.size()));
  return out;
}

}  // namespace demix::cluster
