#pragma once

// How far a tensor is from a reference, for tests that compare against an independent computation.

#include <ATen/ATen.h>

#include <algorithm>

namespace demix::test_support {

// max |a - b| / max |b|: the largest elementwise error against the reference's scale.
inline double relative_difference(const at::Tensor& a, const at::Tensor& b) {
  return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item<double>();
}

// ||a - b|| / ||b|| in float64 on the CPU (the two may sit on different devices and dtypes).
inline double relative_norm_difference(const at::Tensor& a, const at::Tensor& reference) {
  const auto ref = reference.cpu().to(at::kDouble);
  return (a.cpu().to(at::kDouble) - ref).norm().item<double>() /
         std::max(ref.norm().item<double>(), 1e-30);
}

}  // namespace demix::test_support
