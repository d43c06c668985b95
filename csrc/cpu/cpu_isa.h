// Instruction-set variants of the CPU kernels. A kernel is compiled once for
// the baseline x86-64 and again, inlined whole (flatten), for AVX2
// (x86-64-v3) and AVX-512 (x86-64-v4); cpu_isa() picks the variant by
// torch's own CPU capability (at::get_cpu_capability(): the CPU's features,
// lowered with ATEN_CPU_CAPABILITY=avx2 or default), so one environment
// variable selects the same instruction set for ATen and our kernels, and
// the AVX2 and baseline paths can be tested on an AVX-512 machine.
#pragma once

#include <ATen/Version.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

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
    RANGE(a, begin, end);                                                   \
  }                                                                         \
  DDETR_TARGET_AVX2 void RANGE##_avx2(const ARGS<T>& a, int64_t begin,      \
                                      int64_t end) {                        \
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
    case ::ddetr_plugin::CpuIsa::kBaseline: break;                        \
  }
#else
#define DDETR_ISA_VARIANTS(RANGE, ARGS)
#define DDETR_DISPATCH_ISA(RANGE, ...)
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

}  // namespace ddetr_plugin
