#include "demix/data/domain_batcher.h"

#include <algorithm>

#include "demix/core/error.h"
#include "demix/core/hash.h"

namespace demix::data {

DomainBatcher::DomainBatcher(std::vector<const TokenSplit*> splits, std::vector<int64_t> domains,
                             int64_t per_domain, int64_t seq_len, Sampling sampling, uint64_t seed,
                             int64_t first_row)
    : splits_(std::move(splits)),
      domains_(std::move(domains)),
      per_domain_(per_domain),
      seq_len_(seq_len),
      sampling_(sampling),
      seed_(seed),
      first_row_(first_row) {
  double total = 0;
  for (auto d : domains_) {
    const auto* f = splits_.at(size_t(d));
    if (f->size() < uint64_t(seq_len_ + 1))
      throw Error(f->path() + ": " + std::to_string(f->size()) +
                  " tokens, fewer than seq_len+1=" + std::to_string(seq_len_ + 1));
    total += double(f->size());
  }
  double running = 0;
  for (auto d : domains_) {
    running += double(splits_[size_t(d)]->size());
    cumulative_share_.push_back(running / total);
  }
}

int64_t DomainBatcher::draw_domain(uint64_t draw, int64_t row) const {
  const uint64_t h = hash_combine(hash_combine(seed_ ^ 0x6e61747572616cULL, draw), uint64_t(row));
  const double u = double(h >> 11) * 0x1.0p-53;  // uniform in [0, 1)
  const auto it = std::upper_bound(cumulative_share_.begin(), cumulative_share_.end(), u);
  return domains_[size_t(
      std::min<ptrdiff_t>(it - cumulative_share_.begin(), ptrdiff_t(domains_.size()) - 1))];
}

Batch DomainBatcher::next() {
  const uint64_t draw = cursor_++;
  const int64_t rows = this->rows();
  Batch batch;
  // Each row's window is a hash of its row number in the global batch: numbered within its
  // domain for balanced sampling, across the batch for natural sampling (where rows are then
  // grouped by domain, each keeping its number, so that replicas drawing [first_row, first_row +
  // rows) together hold exactly the rows of one stream drawing them all).
  std::vector<std::pair<int64_t, int64_t>> rows_drawn;  // (domain, global row)
  if (sampling_ == Sampling::kBalanced) {
    for (auto d : domains_)
      for (int64_t i = 0; i < per_domain_; ++i) rows_drawn.emplace_back(d, first_row_ + i);
  } else {
    for (int64_t r = 0; r < rows; ++r)
      rows_drawn.emplace_back(draw_domain(draw, first_row_ + r), first_row_ + r);
    std::sort(rows_drawn.begin(), rows_drawn.end());
  }
  auto windows = at::empty({rows, seq_len_ + 1}, at::kLong);
  auto* out = windows.data_ptr<int64_t>();
  for (int64_t r = 0; r < rows; ++r) {
    const auto [d, row] = rows_drawn[size_t(r)];
    batch.domains.push_back(d);
    const TokenSplit& split = *splits_[size_t(d)];
    const uint64_t span = split.size() - uint64_t(seq_len_);  // window starts in [0, span)
    const uint64_t h =
        hash_combine(hash_combine(hash_combine(seed_, uint64_t(d)), draw), uint64_t(row));
    split.read(h % span, uint64_t(seq_len_ + 1), out + r * (seq_len_ + 1));
  }
  batch.inputs = windows.narrow(1, 0, seq_len_);
  batch.targets = windows.narrow(1, 1, seq_len_);
  return batch;
}

EvalWindows eval_windows(const TokenSplit& split, int64_t seq_len, int64_t max_tokens) {
  const auto size = int64_t(split.size());
  int64_t n = (size - 1) / seq_len;
  if (max_tokens > 0) n = std::min(n, std::max<int64_t>(1, max_tokens / seq_len));
  if (n <= 0)
    throw Error(
        split.path() + ": " + std::to_string(size) +
        " tokens, too few for one evaluation window of seq_len+1=" + std::to_string(seq_len + 1));
  auto windows = at::empty({n, seq_len + 1}, at::kLong);
  auto* out = windows.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i)
    split.read(uint64_t(i * seq_len), uint64_t(seq_len + 1), out + i * (seq_len + 1));
  return {windows.narrow(1, 0, seq_len), windows.narrow(1, 1, seq_len)};
}

}  // namespace demix::data
