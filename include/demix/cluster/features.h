#pragma once

// Document features for clustering and routing (c-BTM, Gururangan et al. 2023): tf-idf over the
// project's own token ids, so that training documents and, at inference, the text before a scored
// token are featurised by the same code.
//   w_v = (1 + ln count_v) * idf_v,  idf_v = ln((1 + n) / (1 + df_v)) + 1   (sublinear tf, smooth
//   idf; idf_v = 0 for a token no fitted document holds, so it is ignored), then w / ||w||.
// With svd_dims > 0 the vector is projected on the top right singular vectors of the fitted
// documents' tf-idf matrix (a truncated SVD, computed by randomised subspace iteration) and
// L2-normalised again (LSA). A document without any known token has the zero vector.

#include <ATen/core/Tensor.h>

#include <cmath>
#include <cstdint>
#include <vector>

namespace demix::cluster {

// A document's distinct token ids (increasing) and how often each occurs.
struct TermCounts {
  std::vector<uint32_t> ids;
  std::vector<uint32_t> counts;
  static TermCounts of(const int64_t* tokens, size_t n);
};

// The sublinear tf of a count: 1 + ln c (0 for c = 0).
inline double sublinear_tf(uint32_t count) {
  return count == 0 ? 0.0 : 1.0 + std::log(double(count));
}

class Featurizer {
 public:
  // idf (and the SVD when svd_dims > 0) of `documents` over a vocabulary of `vocab_size` ids.
  static Featurizer fit(const std::vector<TermCounts>& documents, int64_t vocab_size,
                        int64_t svd_dims, uint64_t seed);
  // idf (V) and components (D, V) float32 as fitted; components undefined: no SVD.
  Featurizer(at::Tensor idf, at::Tensor components);

  int64_t vocab_size() const { return idf_.size(0); }
  int64_t dims() const;  // D: the SVD dimensions, or the vocabulary size without SVD
  bool has_svd() const { return components_.defined(); }
  const at::Tensor& idf() const { return idf_; }
  const at::Tensor& components() const { return components_; }  // (D, V)

  // Features of each document: (n, D) float32, rows computed in parallel.
  at::Tensor transform(const std::vector<TermCounts>& documents) const;
  // The L2-normalised tf-idf weights of one document (before any SVD), over its ids.
  std::vector<double> tfidf(const TermCounts& document) const;
  // Un-normalised features of tf-idf `weights` over `ids` added into `out` (D): the projection
  // with SVD, the weights themselves without. Normalising `out` gives the features.
  void accumulate(const uint32_t* ids, const double* weights, size_t n, double* out) const;

 private:
  at::Tensor idf_;         // (V) float32
  at::Tensor components_;  // (D, V) float32, or undefined
  at::Tensor projection_;  // components_ transposed, (V, D) contiguous: one row per token
};

// Scales `v` (n) to unit length; a zero vector stays zero.
void normalize(double* v, int64_t n);

}  // namespace demix::cluster
