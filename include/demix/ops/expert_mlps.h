#pragma once

// A DEMix layer's experts as one autograd node: each expert runs its MLP (fc1, GELU, fc2) on its
// own run of consecutive rows, straight into one output, and the backward writes one input
// gradient. The per-expert path splits the rows, runs each expert as modules, concatenates the
// outputs, and autograd visits the experts one at a time.
// - CPU: the experts spread over the threads, each GEMM on one thread (the per-expert path ran
//   each small GEMM on all threads one after the other).
// - CUDA, with the fused CUDA kernels on (execution_policy.h): the experts one after another,
// without the cat of their
//   outputs and of their input gradients.
//   Under bf16 autocast the input is cast to bf16 once, the GEMMs take bf16 operands, and the
//   weight and bias gradients come out in fp32 (as bf16_linear), fc1's bias gradient from the
//   GELU backward's own pass (gelu_tanh_backward_and_column_sums).

#include <ATen/core/Tensor.h>

#include <optional>
#include <vector>

namespace demix::ops {

// One expert's MLP: fc1 (d_ff, C) and fc2 (C, d_ff), each with its bias.
struct ExpertWeights {
  at::Tensor fc1_weight, fc1_bias, fc2_weight, fc2_bias;
};

// The dtype the experts' node computes in for input x (any shape), or nullopt where it does not
// apply and each expert runs as a module. It needs experts whose parameters (all defined) share
// one float dtype and device, and either a CPU x of that dtype outside
// autocast with more than one expert and thread (-> that dtype), or a CUDA x with
// the fused CUDA kernels on (execution_policy.h) (-> bf16 under bf16 autocast, else x's dtype,
// which must be theirs).
std::optional<at::ScalarType> expert_mlps_dtype(const at::Tensor& x,
                                                const std::vector<ExpertWeights>& experts);

// x (R, C) holds experts[g]'s rows as the g-th run of rows[g] consecutive rows; returns (R, C) in
// `dtype`: each run through its expert. Differentiable in x (its gradient in x's dtype) and in
// every expert's parameters (theirs in the parameters' dtype).
at::Tensor expert_mlps(const at::Tensor& x, const std::vector<int64_t>& rows,
                       const std::vector<ExpertWeights>& experts, at::ScalarType dtype);

}  // namespace demix::ops
