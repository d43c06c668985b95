// CPU kernel of ddetr_plugin::counter_dropout (semantics:
// ../counter_dropout.cpp).
// The hash is integer arithmetic on 32-bit lanes, so the loop vectorises
// (AVX2 / AVX-512 variants, cpu_isa.h); elements are split into chunks over
// threads, and the result does not depend on the split.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <cmath>
#include <cstdint>
#include <limits>

#include "cpu_isa.h"

namespace ddetr_plugin {
namespace {

// MurmurHash3's 32-bit finaliser: a bijection that mixes every input bit
// into every output bit.
inline uint32_t fmix32(uint32_t h) {
  h ^= h >> 16;
  h *= 0x85ebca6bu;
  h ^= h >> 13;
  h *= 0xc2b2ae35u;
  h ^= h >> 16;
  return h;
}

template <typename scalar_t>
struct DropoutArgs {
  const scalar_t* input;
  scalar_t* output;
  uint32_t seed_low, seed_high;
  uint32_t threshold;  // keep when hash >= threshold
  at::opmath_type<scalar_t> scale;  // 1 / (1 - p); 0 when nothing is kept
};

template <typename scalar_t>
void dropout_range(const DropoutArgs<scalar_t>& a, int64_t begin,
                   int64_t end) {
  using acc_t = at::opmath_type<scalar_t>;
  const scalar_t* __restrict__ input = a.input;
  scalar_t* __restrict__ output = a.output;
  const uint32_t seed_low = a.seed_low, seed_high = a.seed_high;
  const uint32_t threshold = a.threshold;
  const acc_t scale = a.scale;
#pragma omp simd
  for (int64_t i = begin; i < end; ++i) {
    const uint64_t index = static_cast<uint64_t>(i);
    const uint32_t hash =
        fmix32(fmix32(static_cast<uint32_t>(index) ^ seed_low) ^
               static_cast<uint32_t>(index >> 32) ^ seed_high);
    const acc_t factor = hash >= threshold ? scale : acc_t(0);
    output[i] = static_cast<scalar_t>(static_cast<acc_t>(input[i]) * factor);
  }
}

// AVX-512 and AVX2 variants for every dtype (cpu_isa.h)
DDETR_ISA_VARIANTS(dropout_range, DropoutArgs)

template <typename scalar_t>
void run_dropout(const DropoutArgs<scalar_t>& a, int64_t begin, int64_t end) {
  DDETR_DISPATCH_ISA(dropout_range, a, begin, end)
  dropout_range(a, begin, end);
}

at::Tensor counter_dropout_cpu(const at::Tensor& input, double p,
                               int64_t seed) {
  TORCH_CHECK_TYPE(input.is_floating_point(),
                   "counter_dropout: input must be floating point, got ",
                   input.scalar_type());
  TORCH_CHECK_VALUE(p >= 0.0 && p <= 1.0,
                    "counter_dropout: p must be in [0, 1], got ", p);
  const auto in = input.contiguous();
  auto out = at::empty(in.sizes(), in.options());
  // keep when hash >= threshold: P(keep) = 1 - threshold / 2^32. The
  // rounding is done on 64 bits: for p within 2^-33 of 1 (and p == 1) it
  // gives 2^32, which no 32-bit hash reaches, so nothing is kept; as a
  // uint32 it would wrap to 0 and keep everything, scaled by ~1e10. That
  // case runs the same loop with threshold 0 and scale 0: output input * 0.
  const int64_t rounded = std::llround(p * 4294967296.0);
  const bool drop_all = rounded > std::numeric_limits<uint32_t>::max();
  const uint32_t threshold = drop_all ? 0u : static_cast<uint32_t>(rounded);
  const uint64_t seed_bits = static_cast<uint64_t>(seed);
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, in.scalar_type(), "counter_dropout_cpu",
      [&] {
        using acc_t = at::opmath_type<scalar_t>;
        DropoutArgs<scalar_t> a{in.const_data_ptr<scalar_t>(),
                                out.mutable_data_ptr<scalar_t>(),
                                static_cast<uint32_t>(seed_bits),
                                static_cast<uint32_t>(seed_bits >> 32),
                                threshold,
                                drop_all ? acc_t(0) : acc_t(1) / acc_t(1 - p)};
        at::parallel_for(0, in.numel(), 1 << 15,
                         [&](int64_t begin, int64_t end) {
                           run_dropout(a, begin, end);
                         });
      });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(ddetr_plugin, CPU, m) {
  m.impl("counter_dropout", &counter_dropout_cpu);
}

}  // namespace ddetr_plugin
