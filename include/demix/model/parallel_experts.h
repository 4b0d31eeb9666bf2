#pragma once

// A DEMix layer's experts on a multi-core CPU: each expert runs its MLP (fc1, GELU, fc2) on its
// own rows, the experts spread over the threads (each GEMM then on one thread), forward and
// backward, as one autograd node. The per-expert path runs each small GEMM on all threads one
// after the other, and autograd's backward visits the experts one at a time.

#include <ATen/core/Tensor.h>

#include <vector>

namespace demix::model {

struct MlpImpl;

// Whether parallel_expert_mlps applies to input x (any shape): a CPU tensor of the experts' dtype
// outside autocast, more than one expert and thread, and plain experts (a bias on each linear, no
// LoRA adapter).
bool parallel_experts_fit(const at::Tensor& x, const std::vector<MlpImpl*>& experts);

// x (R, C) holds experts[g]'s rows as the g-th run of rows[g] consecutive rows; returns (R, C):
// each run through its expert. Differentiable in x and in every expert's parameters.
at::Tensor parallel_expert_mlps(const at::Tensor& x, const std::vector<int64_t>& rows,
                                const std::vector<MlpImpl*>& experts);

}  // namespace demix::model
