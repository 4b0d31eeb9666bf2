#pragma once

// Training batches of k sequences per domain (DEMix paper, sec. 3.2: every expert sees the same
// number of sequences per step), or, for the DENSE baseline, k*E sequences whose domains are drawn
// in proportion to each domain's training tokens.
//
// Randomness is counter-based: the window of row i in draw c is a hash of (seed, domain, c, i), so
// the whole stream state is one integer (the cursor). Saving and restoring it resumes exactly,
// and any process can reproduce any other's rows.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "demix/core/config_choices.h"
#include "demix/data/token_split.h"

namespace demix::data {

struct Batch {
  at::Tensor inputs;             // (B, T) int64
  at::Tensor targets;            // (B, T) int64: inputs shifted by one token
  std::vector<int64_t> domains;  // (B): domain / expert id of each row, rows grouped by domain
};

using Sampling = DataSampling;  // data.sampling

class DomainBatcher {
 public:
  // splits[d] is domain d's training split; `domains` lists the ids this stream draws (all of
  // them in a single process). Row i of a domain is the domain's global row first_row + i, so
  // replica q of a domain drawing k rows (first_row = q*k) gets exactly the rows that one process
  // drawing k * replicas rows would give it. The splits must outlive the batcher.
  DomainBatcher(std::vector<const TokenSplit*> splits, std::vector<int64_t> domains,
                int64_t per_domain, int64_t seq_len, Sampling sampling, uint64_t seed,
                int64_t first_row = 0);

  Batch next();
  int64_t rows() const { return per_domain_ * int64_t(domains_.size()); }  // per batch
  uint64_t cursor() const { return cursor_; }
  void set_cursor(uint64_t cursor) { cursor_ = cursor; }

 private:
  int64_t draw_domain(uint64_t draw, int64_t row) const;  // natural sampling

  std::vector<const TokenSplit*> splits_;
  std::vector<int64_t> domains_;
  std::vector<double> cumulative_share_;  // natural sampling: cumulative token share per domain
  int64_t per_domain_;
  int64_t seq_len_;
  Sampling sampling_;
  uint64_t seed_;
  int64_t first_row_;
  uint64_t cursor_ = 0;
};

// Consecutive, non-overlapping windows of a split for evaluation: every token after the first is
// predicted exactly once (up to max_tokens, 0 = all).
struct EvalWindows {
  at::Tensor inputs;   // (N, T)
  at::Tensor targets;  // (N, T)
};
EvalWindows eval_windows(const TokenSplit& split, int64_t seq_len, int64_t max_tokens);

}  // namespace demix::data
