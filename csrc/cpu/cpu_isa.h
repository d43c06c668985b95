// Instruction-set variants of the CPU kernels. A kernel is compiled once for
// the baseline x86-64 and again, inlined whole (flatten), for AVX2
// (x86-64-v3) and AVX-512 (x86-64-v4); cpu_isa() picks the variant by
// torch's own CPU capability (at::get_cpu_capability(): the CPU's features,
// lowered with ATEN_CPU_CAPABILITY=avx2 or default), so one environment
// variable selects the same instruction set for ATen and our kernels, and
// the AVX2 and baseline paths can be tested on an AVX-512 machine. (torch
// 2.13 also honours a value above the CPU's, unchecked: ATen's own kernels
// then die of SIGILL, so only lower the capability.)
//
// Every variant notes itself when it runs (note_cpu_variant), so tests can
// assert which one a kernel actually ran, not only what torch reports:
// torch.ops.ddetr_plugin.cpu_kernel_variant() is cpu_isa(), the decision,
// and last_cpu_kernel_variant() the variant that ran last (cpu_isa.cpp).
#pragma once

#include <ATen/Version.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <atomic>
#include <cstdint>
#include <string>

#if defined(__x86_64__) && defined(__GNUC__)
#define DDETR_X86_VARIANTS 1
#define DDETR_TARGET_AVX512 __attribute__((target("arch=x86-64-v4"), flatten))
#define DDETR_TARGET_AVX2 __attribute__((target("arch=x86-64-v3"), flatten))

// Defines RANGE_avx512 and RANGE_avx2 for the dtypes the kernels dispatch
// (float, double, Half, BFloat16): `void RANGE(const ARGS<T>&, int64_t begin,
// int64_t end)` compiled for each instruction set.
#define DDETR_ISA_VARIANT(RANGE, ARGS, T)                                    \
  DDETR_TARGET_AVX512 void RANGE##_avx512(const ARGS<T>& a, int64_t begin,  \
                                          int64_t end) {                    \
    ::ddetr_plugin::note_cpu_variant(::ddetr_plugin::CpuIsa::kAvx512);     \
    RANGE(a, begin, end);                                                   \
  }                                                                         \
  DDETR_TARGET_AVX2 void RANGE##_avx2(const ARGS<T>& a, int64_t begin,      \
                                      int64_t end) {                        \
    ::ddetr_plugin::note_cpu_variant(::ddetr_plugin::CpuIsa::kAvx2);       \
    RANGE(a, begin, end);                                                   \
  }
#define DDETR_ISA_VARIANTS(RANGE, ARGS)        \
  DDETR_ISA_VARIANT(RANGE, ARGS, float)        \
  DDETR_ISA_VARIANT(RANGE, ARGS, double)       \
  DDETR_ISA_VARIANT(RANGE, ARGS, at::Half)     \
  DDETR_ISA_VARIANT(RANGE, ARGS, at::BFloat16)

// Returns from the calling function through the variant of RANGE for this
// CPU; falls through (to the baseline RANGE) on the baseline.
#define DDETR_DISPATCH_ISA(RANGE, ...)                                    \
  switch (::ddetr_plugin::cpu_isa()) {                                    \
    case ::ddetr_plugin::CpuIsa::kAvx512: return RANGE##_avx512(__VA_ARGS__); \
    case ::ddetr_plugin::CpuIsa::kAvx2: return RANGE##_avx2(__VA_ARGS__);     \
    case ::ddetr_plugin::CpuIsa::kBaseline:                               \
      ::ddetr_plugin::note_cpu_variant(::ddetr_plugin::CpuIsa::kBaseline); \
      break;                                                              \
  }
#else
#define DDETR_ISA_VARIANTS(RANGE, ARGS)
#define DDETR_DISPATCH_ISA(RANGE, ...) \
  ::ddetr_plugin::note_cpu_variant(::ddetr_plugin::CpuIsa::kBaseline);
#endif

namespace ddetr_plugin {

enum class CpuIsa { kBaseline, kAvx2, kAvx512 };

inline CpuIsa cpu_isa() {
  static const CpuIsa isa = [] {
    const std::string capability = at::get_cpu_capability();
    if (capability == "AVX512") return CpuIsa::kAvx512;
    if (capability == "AVX2") return CpuIsa::kAvx2;
    return CpuIsa::kBaseline;
  }();
  return isa;
}

// ATEN_CPU_CAPABILITY's name of a variant: "avx512", "avx2" or "default".
inline const char* cpu_isa_name(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kAvx512: return "avx512";
    case CpuIsa::kAvx2: return "avx2";
    case CpuIsa::kBaseline: break;
  }
  return "default";
}

// The variant that ran last (-1: none yet), one for the whole library (an
// inline function's static). Written once per range a thread runs, and only
// when it changes, so the cache line stays shared between threads.
inline std::atomic<int>& last_cpu_variant() {
  static std::atomic<int> variant{-1};
  return variant;
}

inline void note_cpu_variant(CpuIsa isa) {
  auto& last = last_cpu_variant();
  if (last.load(std::memory_order_relaxed) != static_cast<int>(isa)) {
    last.store(static_cast<int>(isa), std::memory_order_relaxed);
  }
}

}  // namespace ddetr_plugin
