#include "demix/ops/cpu/cpu_gemm.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/record_function.h>
#include <cpuid.h>
#include <dlfcn.h>
#include <spdlog/spdlog.h>

#include <climits>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

#include "demix/core/error.h"
#include "demix/ops/execution_policy.h"

namespace demix::ops {
namespace {

// CBLAS's enumerators, as every CBLAS defines them.
constexpr int kRowMajor = 101, kNoTrans = 111, kTrans = 112;
using Sgemm = void (*)(int order, int trans_a, int trans_b, int m, int n, int k, float alpha,
                       const float* a, int lda, const float* b, int ldb, float beta, float* c,
                       int ldc);

struct OpenBlas {
  Sgemm sgemm = nullptr;
  std::string why_not;  // when sgemm is null
};

OpenBlas load_openblas() {
  // The OpenMP build by its Debian path first: libopenblas.so.0 on the loader's path is whichever
  // build the alternatives system picked, and a pthreads one would start threads of its own inside
  // the experts' OpenMP threads.
  OpenBlas lib;
  for (const char* path :
       {"/usr/lib/x86_64-linux-gnu/openblas-openmp/libopenblas.so.0", "libopenblas.so.0"}) {
    void* handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) {
      lib.why_not = dlerror();
      continue;
    }
    const auto parallel = reinterpret_cast<int (*)()>(dlsym(handle, "openblas_get_parallel"));
    const auto sgemm = reinterpret_cast<Sgemm>(dlsym(handle, "cblas_sgemm"));
    if (parallel == nullptr || sgemm == nullptr) {
      lib.why_not = std::string(path) + " has no openblas_get_parallel or cblas_sgemm";
    } else if (parallel() == 1) {  // 0: single-threaded, 1: pthreads, 2: OpenMP
      lib.why_not = std::string(path) + " is a pthreads build (install libopenblas0-openmp)";
    } else {
      lib.sgemm = sgemm;
      return lib;
    }
    dlclose(handle);
  }
  return lib;
}

const OpenBlas& openblas() {
  static const OpenBlas lib = load_openblas();
  return lib;
}

bool amd_cpu() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__get_cpuid(0, &eax, &ebx, &ecx, &edx) == 0) return false;
  char vendor[13] = {};
  std::memcpy(vendor, &ebx, 4);
  std::memcpy(vendor + 4, &edx, 4);
  std::memcpy(vendor + 8, &ecx, 4);
  return std::strcmp(vendor, "AuthenticAMD") == 0;
}

// A matrix operand as CBLAS takes it (row-major): transposed or not, and its leading dimension.
struct Operand {
  bool ok;
  int trans, ld;
};

Operand operand(const at::Tensor& t) {
  const int64_t rows = t.size(0), cols = t.size(1);
  if (t.stride(1) == 1 && t.stride(0) >= std::max<int64_t>(cols, 1) && t.stride(0) <= INT_MAX)
    return {true, kNoTrans, int(t.stride(0))};
  if (t.stride(0) == 1 && t.stride(1) >= std::max<int64_t>(rows, 1) && t.stride(1) <= INT_MAX)
    return {true, kTrans, int(t.stride(1))};
  return {false, 0, 0};
}

bool fp32_cpu_matrix(const at::Tensor& t) {
  return t.dim() == 2 && t.is_cpu() && t.scalar_type() == at::kFloat && t.size(0) > 0 &&
         t.size(1) > 0 && t.size(0) <= INT_MAX && t.size(1) <= INT_MAX;
}

// out = a @ b (+ bias) through OpenBLAS; false (nothing done) where it did not load or the
// tensors do not fit (dtype, device, layout).
bool openblas_gemm(at::Tensor& out, const at::Tensor& a, const at::Tensor& b,
                   const at::Tensor& bias) {
  if (openblas().sgemm == nullptr || !fp32_cpu_matrix(a) || !fp32_cpu_matrix(b) ||
      !fp32_cpu_matrix(out) ||
      (bias.defined() && !(bias.is_cpu() && bias.scalar_type() == at::kFloat)))
    return false;
  const auto A = operand(a), B = operand(b), C = operand(out);
  if (!A.ok || !B.ok || !C.ok || C.trans != kNoTrans) return false;
  RECORD_FUNCTION("demix::openblas_sgemm", std::vector<c10::IValue>({a, b}));  // for --profile
  // A bias is copied into every row first, then the product is added to it (beta = 1).
  if (bias.defined()) out.copy_(bias.expand_as(out));
  openblas().sgemm(kRowMajor, A.trans, B.trans, int(a.size(0)), int(b.size(1)), int(a.size(1)),
                   1.0f, a.const_data_ptr<float>(), A.ld, b.const_data_ptr<float>(), B.ld,
                   bias.defined() ? 1.0f : 0.0f, out.mutable_data_ptr<float>(), C.ld);
  return true;
}

}  // namespace

bool openblas_available(std::string* why_not) {
  const auto& lib = openblas();
  if (why_not != nullptr) *why_not = lib.why_not;
  return lib.sgemm != nullptr;
}

CpuGemm resolve_cpu_gemm(CpuGemmChoice choice) {
  if (choice == CpuGemmChoice::kAten) return CpuGemm::kAten;
  if (choice == CpuGemmChoice::kAuto)
    return amd_cpu() && openblas_available() ? CpuGemm::kOpenBlas : CpuGemm::kAten;
  std::string why_not;
  if (!openblas_available(&why_not))
    throw std::invalid_argument("train.cpu_gemm=openblas: OpenBLAS could not be loaded: " +
                                why_not);
  return CpuGemm::kOpenBlas;
}

const char* to_string(CpuGemm gemm) { return gemm == CpuGemm::kOpenBlas ? "openblas" : "aten"; }

void gemm_out(at::Tensor& out, const at::Tensor& a, const at::Tensor& b, const at::Tensor& bias) {
  TORCH_CHECK(a.dim() == 2 && b.dim() == 2 && out.dim() == 2 && a.size(1) == b.size(0) &&
                  out.size(0) == a.size(0) && out.size(1) == b.size(1),
              "gemm_out: expected out (m, n) = a (m, k) @ b (k, n), got ", out.sizes(), ", ",
              a.sizes(), ", ", b.sizes());
  if (execution_policy().cpu_gemm == CpuGemm::kOpenBlas && openblas_gemm(out, a, b, bias)) return;
  if (bias.defined())
    at::addmm_out(out, bias, a, b);
  else
    at::mm_out(out, a, b);
}

at::Tensor gemm(const at::Tensor& a, const at::Tensor& b, const at::Tensor& bias) {
  if (execution_policy().cpu_gemm != CpuGemm::kOpenBlas || !fp32_cpu_matrix(a))
    return bias.defined() ? at::addmm(bias, a, b) : at::mm(a, b);
  auto out = at::empty({a.size(0), b.size(1)}, a.options());
  gemm_out(out, a, b, bias);
  return out;
}

}  // namespace demix::ops
