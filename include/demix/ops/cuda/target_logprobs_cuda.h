#pragma once

// The CUDA kernels behind target_logprobs (target_logprobs.h) for contiguous (rows, v) logits on
// the current device. Plain launchers on raw pointers, so that the .cu file compiles with nvcc
// alone, without ATen's headers. Built where CMake finds nvcc next to a CUDA LibTorch
// (DEMIX_CUDA_KERNELS); the CPU build never sees them.

#include <cuda_runtime_api.h>

#include <cstdint>

namespace demix::ops::cuda {

enum class LogitType { kFloat, kBFloat16, kHalf };

// One block per row, and rows are the grid's x dimension (at most 2^31 - 1 blocks): fewer rows
// than this.
constexpr int64_t kTargetLogprobsMaxRows = int64_t(1) << 31;

// Per row, in fp32: log_sum_exp = log sum_j exp(x_j) and out = x[target] - log_sum_exp. One read
// of the logits, nothing of size (rows, v) written. A row with a NaN or +inf logit gets NaN (as
// log_softmax gives); so does a target outside [0, v), checked on the device (no host sync).
// Returns an error message, or nullptr once the kernel is queued.
const char* target_logprobs_forward(LogitType type, const void* logits, const int64_t* targets,
                                    int64_t rows, int64_t v, float* log_sum_exp, float* out,
                                    cudaStream_t stream);

// In place, per row: x = g (onehot(target) - exp(x - log_sum_exp)) in the logits' own type, the
// gradient of out under an upstream gradient g (rows). Returns as the forward does.
const char* target_logprobs_backward(LogitType type, void* logits, const int64_t* targets,
                                     int64_t rows, int64_t v, const float* log_sum_exp,
                                     const float* grad_out, cudaStream_t stream);

}  // namespace demix::ops::cuda
