#pragma once

// Turns a next-token distribution into a token: temperature, then top-k, then top-p (nucleus)
// filtering, then a draw from a seeded generator. Temperature 0 is greedy (the arg max).

#include <ATen/ATen.h>

#include <cstdint>

namespace demix::generate {

struct SamplingOptions {
  double temperature = 1.0;  // 0: greedy
  int64_t top_k = 0;         // keep the k most likely tokens; 0: all
  double top_p = 1.0;        // keep the smallest set whose probability reaches top_p
  uint64_t seed = 0;
};

// log_probs (V) -> the filtered, renormalised distribution to draw from (V), float64.
at::Tensor sampling_distribution(const at::Tensor& log_probs, const SamplingOptions& options);

class Sampler {
 public:
  explicit Sampler(SamplingOptions options);
  int64_t next(const at::Tensor& log_probs);  // (V)

 private:
  SamplingOptions options_;
  at::Generator generator_;
};

}  // namespace demix::generate
