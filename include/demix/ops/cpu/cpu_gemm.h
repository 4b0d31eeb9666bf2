#pragma once

// The library behind demix's fp32 GEMMs on the CPU: the linear layers, the tied head and the
// experts, forward and backward. The wheel's ATen runs GEMMs through MKL, whose code path on AMD
// CPUs is slow (docs/performance.md has the rates on an EPYC). OpenBLAS is loaded at run time from
// Debian's OpenMP build (libopenblas0-openmp), which shares the wheel's libgomp: called inside
// an at::parallel_for (the experts' threads) a GEMM runs on its own thread, elsewhere on
// at::get_num_threads() threads. It is opened privately (RTLD_LOCAL), so ATen's own BLAS calls
// keep going to MKL. Its results change in the last bits with the number of threads, so runs are
// reproducible for a given thread count.

#include <ATen/core/Tensor.h>

#include <string>

#include "demix/core/config_choices.h"

namespace demix::ops {

enum class CpuGemm { kAten, kOpenBlas };

// train.cpu_gemm: "aten"; "openblas" (throws, saying why, where it cannot be loaded); "auto":
// OpenBLAS on AMD CPUs where it loads, else ATen. Throws std::invalid_argument on another value.
CpuGemm resolve_cpu_gemm(CpuGemmChoice choice);
const char* to_string(CpuGemm gemm);
// Whether an OpenMP (or single-threaded) OpenBLAS loaded; if not, why not.
bool openblas_available(std::string* why_not = nullptr);

// out = a @ b (+ bias, one value per column, added to every row) for matrices a (m, k), b (k, n)
// and out (m, n). Through OpenBLAS where the execution policy's cpu_gemm is kOpenBlas and all are
// fp32 CPU tensors with a unit stride in one dimension (a transposed view is fine; out's rows
// contiguous), else through ATen (addmm / mm), which also handles every other device and dtype.
void gemm_out(at::Tensor& out, const at::Tensor& a, const at::Tensor& b,
              const at::Tensor& bias = {});
at::Tensor gemm(const at::Tensor& a, const at::Tensor& b, const at::Tensor& bias = {});

}  // namespace demix::ops
