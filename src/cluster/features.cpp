#include "demix/cluster/features.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>

#include "demix/core/error.h"

namespace demix::cluster {

TermCounts TermCounts::of(const int64_t* tokens, size_t n) {
  std::vector<uint32_t> sorted(tokens, tokens + n);
  std::sort(sorted.begin(), sorted.end());
  TermCounts out;
  for (size_t i = 0; i < sorted.size();) {
    size_t j = i;
    while (j < sorted.size() && sorted[j] == sorted[i]) ++j;
    out.ids.push_back(sorted[i]);
    out.counts.push_back(uint32_t(j - i));
    i = j;
  }
  return out;
}

void normalize(double* v, int64_t n) {
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += v[i] * v[i];
  if (sum <= 0) return;
  const double scale = 1.0 / std::sqrt(sum);
  for (int64_t i = 0; i < n; ++i) v[i] *= scale;
}

namespace {

// The fitted documents' normalised tf-idf rows as a sparse matrix, (n, V), in float64, with its
// transpose for X^T products: every product sums in a fixed order, so results do not depend on
// the thread count.
struct SparseRows {
  int64_t rows = 0, cols = 0;
  std::vector<int64_t> row_start, col_start;  // CSR and CSC offsets
  std::vector<uint32_t> col_of, row_of;
  std::vector<double> value, value_by_col;

  SparseRows(const std::vector<std::vector<double>>& weights, const std::vector<TermCounts>& docs,
             int64_t V)
      : rows(int64_t(docs.size())), cols(V) {
    row_start.push_back(0);
    std::vector<int64_t> per_col(size_t(V) + 1, 0);
    for (size_t i = 0; i < docs.size(); ++i) {
      for (size_t t = 0; t < docs[i].ids.size(); ++t) {
        col_of.push_back(docs[i].ids[t]);
        value.push_back(weights[i][t]);
        ++per_col[docs[i].ids[t] + 1];
      }
      row_start.push_back(int64_t(col_of.size()));
    }
    for (int64_t v = 0; v < V; ++v) per_col[size_t(v) + 1] += per_col[size_t(v)];
    col_start = per_col;
    row_of.resize(col_of.size());
    value_by_col.resize(col_of.size());
    for (int64_t i = 0; i < rows; ++i)  // rows in order, so each column lists its rows in order
      for (int64_t p = row_start[size_t(i)]; p < row_start[size_t(i) + 1]; ++p) {
        const auto q = size_t(per_col[col_of[size_t(p)]]++);
        row_of[q] = uint32_t(i);
        value_by_col[q] = value[size_t(p)];
      }
  }

  // X @ dense (cols, l) -> (rows, l)
  at::Tensor times(const at::Tensor& input) const {
    const auto dense = input.contiguous();  // LAPACK's Q comes column-major
    const auto l = dense.size(1);
    auto out = at::zeros({rows, l}, dense.options());
    const auto* d = dense.data_ptr<double>();
    auto* o = out.data_ptr<double>();
    at::parallel_for(0, rows, 64, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i)
        for (int64_t p = row_start[size_t(i)]; p < row_start[size_t(i) + 1]; ++p)
          for (int64_t c = 0; c < l; ++c)
            o[i * l + c] += value[size_t(p)] * d[col_of[size_t(p)] * l + c];
    });
    return out;
  }

  // X^T @ dense (rows, l) -> (cols, l)
  at::Tensor transpose_times(const at::Tensor& input) const {
    const auto dense = input.contiguous();
    const auto l = dense.size(1);
    auto out = at::zeros({cols, l}, dense.options());
    const auto* d = dense.data_ptr<double>();
    auto* o = out.data_ptr<double>();
    at::parallel_for(0, cols, 64, [&](int64_t begin, int64_t end) {
      for (int64_t j = begin; j < end; ++j)
        for (int64_t p = col_start[size_t(j)]; p < col_start[size_t(j) + 1]; ++p)
          for (int64_t c = 0; c < l; ++c)
            o[j * l + c] += value_by_col[size_t(p)] * d[row_of[size_t(p)] * l + c];
    });
    return out;
  }
};

at::Tensor orthonormal_basis(const at::Tensor& a) { return std::get<0>(at::linalg_qr(a)); }

// The top `dims` right singular vectors of X, (dims, V): randomised subspace iteration (Halko,
// Martinsson and Tropp 2011, alg. 4.4) with oversampling and power iterations, then an exact SVD
// of the small projected matrix. Each vector's sign makes its largest-magnitude entry positive.
at::Tensor truncated_svd(const SparseRows& x, int64_t dims, uint64_t seed) {
  constexpr int64_t kOversampling = 10, kPowerIterations = 7;
  const int64_t l = std::min(dims + kOversampling, std::min(x.rows, x.cols));
  auto generator = at::make_generator<at::CPUGeneratorImpl>(seed);
  const auto omega = at::randn({x.cols, l}, generator, at::TensorOptions().dtype(at::kDouble));
  auto q = orthonormal_basis(x.times(omega));
  for (int64_t i = 0; i < kPowerIterations; ++i)
    q = orthonormal_basis(x.times(orthonormal_basis(x.transpose_times(q))));
  const auto b = x.transpose_times(q).t();  // (l, V) = Q^T X
  auto vt = std::get<2>(at::linalg_svd(b, /*full_matrices=*/false)).narrow(0, 0, dims);
  const auto largest = vt.abs().argmax(1, /*keepdim=*/true);
  return (vt * vt.gather(1, largest).sign()).contiguous();
}

}  // namespace

Featurizer Featurizer::fit(const std::vector<TermCounts>& documents, int64_t vocab_size,
                           int64_t svd_dims, uint64_t seed) {
  const auto n = int64_t(documents.size());
  std::vector<int64_t> df(size_t(vocab_size), 0);
  for (const auto& d : documents)
    for (auto id : d.ids) {
      if (int64_t(id) >= vocab_size)
        throw Error("token id " + std::to_string(id) + " outside the vocabulary of " +
                    std::to_string(vocab_size));
      ++df[id];
    }
  auto idf = at::zeros({vocab_size}, at::kFloat);
  auto* idf_data = idf.data_ptr<float>();
  for (int64_t v = 0; v < vocab_size; ++v)
    if (df[size_t(v)] > 0)
      idf_data[v] = float(std::log((1.0 + double(n)) / (1.0 + double(df[size_t(v)]))) + 1.0);
  Featurizer plain(idf, at::Tensor());
  if (svd_dims == 0) return plain;
  if (svd_dims >= std::min(n, vocab_size))
    throw Error("cluster.svd_dims=" + std::to_string(svd_dims) + ": expected fewer than the " +
                std::to_string(std::min(n, vocab_size)) +
                " documents (and vocabulary entries) it is fitted on");
  std::vector<std::vector<double>> weights(documents.size());
  at::parallel_for(0, n, 256, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) weights[size_t(i)] = plain.tfidf(documents[size_t(i)]);
  });
  const SparseRows x(weights, documents, vocab_size);
  return Featurizer(idf, truncated_svd(x, svd_dims, seed).to(at::kFloat));
}

Featurizer::Featurizer(at::Tensor idf, at::Tensor components)
    : idf_(idf.to(at::kFloat).contiguous()) {
  if (components.defined()) {
    components_ = components.to(at::kFloat).contiguous();
    projection_ = components_.t().contiguous();
  }
}

int64_t Featurizer::dims() const { return has_svd() ? components_.size(0) : vocab_size(); }

std::vector<double> Featurizer::tfidf(const TermCounts& document) const {
  const auto* idf = idf_.data_ptr<float>();
  const auto V = vocab_size();
  std::vector<double> w(document.ids.size());
  for (size_t t = 0; t < w.size(); ++t)
    w[t] = int64_t(document.ids[t]) < V ? sublinear_tf(document.counts[t]) * idf[document.ids[t]]
                                        : 0.0;
  normalize(w.data(), int64_t(w.size()));
  return w;
}

void Featurizer::accumulate(const uint32_t* ids, const double* weights, size_t n,
                            double* out) const {
  const auto V = vocab_size();
  if (!has_svd()) {
    for (size_t t = 0; t < n; ++t)
      if (int64_t(ids[t]) < V) out[ids[t]] += weights[t];
    return;
  }
  const auto D = dims();
  const auto* projection = projection_.data_ptr<float>();
  for (size_t t = 0; t < n; ++t) {
    if (int64_t(ids[t]) >= V || weights[t] == 0) continue;
    const float* row = projection + int64_t(ids[t]) * D;
    for (int64_t c = 0; c < D; ++c) out[c] += weights[t] * row[c];
  }
}

at::Tensor Featurizer::transform(const std::vector<TermCounts>& documents) const {
  const auto n = int64_t(documents.size()), D = dims();
  auto out = at::zeros({n, D}, at::kFloat);
  auto* o = out.data_ptr<float>();
  at::parallel_for(0, n, 64, [&](int64_t begin, int64_t end) {
    std::vector<double> row(static_cast<size_t>(D));
    for (int64_t i = begin; i < end; ++i) {
      std::fill(row.begin(), row.end(), 0.0);
      const auto& d = documents[size_t(i)];
      const auto w = tfidf(d);
      accumulate(d.ids.data(), w.data(), w.size(), row.data());
      normalize(row.data(), D);
      std::copy(row.begin(), row.end(), o + i * D);
    }
  });
  return out;
}

}  // namespace demix::cluster
