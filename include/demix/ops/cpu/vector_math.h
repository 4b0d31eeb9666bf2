#pragma once

// What the hand-written CPU kernels (gelu.cpp, target_logprobs.cpp) share: a polynomial exp that
// GCC vectorises, and the run-time choice between their AVX-512 and AVX2 builds. A kernel is one
// always_inline loop body compiled twice through __attribute__((target)) wrappers; the files
// that include this are built with -fno-trapping-math (CMakeLists.txt): without it GCC keeps
// exp's range clamp as branches and vectorises nothing under AVX2 (and -Wno-psabi: the vector
// types' calling convention never matters, every use is inlined).

#include <cstdint>

namespace demix::ops {

// Vectors of 16 and 8 floats (GCC vector extensions): one AVX-512 or AVX2 register. Kernels that
// need control over their loops (prefetching, reductions in lanes) are written on these.
typedef float Float16 __attribute__((vector_size(64)));
typedef float Float8 __attribute__((vector_size(32)));

// The int32 type of a float type's shape (for exp_poly's exponent bits).
template <class T>
struct Int32Like {
  using type = int32_t;
};
template <>
struct Int32Like<Float16> {
  typedef int32_t type __attribute__((vector_size(64)));
};
template <>
struct Int32Like<Float8> {
  typedef int32_t type __attribute__((vector_size(32)));
};

// exp(x) by 2^n p(r), x = n ln 2 + r, |r| <= ln2 / 2, p the degree-7 Taylor polynomial (relative
// error < 1e-8 on that range, below fp32 rounding), for a float or a Float16/Float8 lane-wise.
// x is clamped to [-87, 88.72]: there 2^n is a normal float or, at the top (n = 128), inf. NaN
// comes out as a finite number: callers that may see one check for it themselves.
template <class T>
[[gnu::always_inline]] inline T exp_poly(T x) {
  using Int = typename Int32Like<T>::type;
  x = x < 88.72f ? x : 88.72f;
  x = x > -87.0f ? x : -87.0f;
  const float shifter = 12582912.0f;  // 1.5 * 2^23: the sum's low mantissa bits hold round(x/ln 2)
  const T t = x * 1.4426950408889634f + shifter;
  const T n = t - shifter;
  const T r = (x - n * 0.693145751953125f) - n * 1.428606765330187e-06f;  // ln 2, hi + lo
  T p = r * (1.0f / 5040) + 1.0f / 720;
  p = p * r + 1.0f / 120;
  p = p * r + 1.0f / 24;
  p = p * r + 1.0f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const Int two_to_n = (__builtin_bit_cast(Int, t) - 0x4B400000 + 127) << 23;
  return p * __builtin_bit_cast(T, two_to_n);
}

// The widest build of a kernel this CPU runs: AVX-512, else AVX2 with FMA, else nullptr (the
// caller then takes ATen's kernel).
template <class Kernel>
Kernel widest_kernel(Kernel avx512, Kernel avx2) {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return avx2;
  return nullptr;
}

}  // namespace demix::ops
