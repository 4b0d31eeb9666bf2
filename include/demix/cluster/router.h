#pragma once

// The cluster router (c-BTM): the features of the text so far (features.h) against one centre
// per expert, weights softmax(-d_j^2 / T) over the squared distances, and mixing of only the
// top-k experts by their renormalised weights. Centres are k-means centres (demix cluster) or
// each labelled domain's mean feature vector (demix router).

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

#include "demix/cluster/features.h"

namespace demix::cluster {

class ClusterRouter {
 public:
  ClusterRouter(Featurizer featurizer, at::Tensor centres, std::vector<std::string> experts);
  // Reads a router file written by save(); throws Error naming the file.
  static ClusterRouter load(const std::string& path);
  void save(const std::string& path, const std::string& source) const;

  const Featurizer& featurizer() const { return featurizer_; }
  const at::Tensor& centres() const { return centres_; }  // (E, D) float32
  const std::vector<std::string>& experts() const { return experts_; }

  // softmax(-d_j^2 / temperature) of one feature vector (D) over the E centres.
  std::vector<double> weights(const double* features, double temperature) const;

 private:
  Featurizer featurizer_;
  at::Tensor centres_;
  std::vector<double> centre_norms_;  // ||c_j||^2
  std::vector<std::string> experts_;
};

// The k largest weights renormalised to sum to 1 (the others 0); k = 0 or k >= E keeps them all.
// Ties go to the lower expert id.
std::vector<double> top_k_weights(const std::vector<double>& weights, int64_t k);

// The features of a growing text, updated token by token: the tf of a token that occurs again
// changes by ln(c + 1) - ln(c), so adding a token costs one projection row (D), not a refit.
class RouterContext {
 public:
  explicit RouterContext(const Featurizer& featurizer);
  void add(int64_t token);
  void add(const int64_t* tokens, size_t n) {
    for (size_t i = 0; i < n; ++i) add(tokens[i]);
  }
  // The text's features (D): what Featurizer::transform gives for all tokens added so far.
  std::vector<double> features() const;

 private:
  const Featurizer& featurizer_;
  std::vector<uint32_t> counts_;  // per token id
  std::vector<double> sum_;       // un-normalised features (D)
};

}  // namespace demix::cluster
