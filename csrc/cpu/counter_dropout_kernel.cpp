// CPU kernels of ddetr_plugin::counter_dropout, relu_counter_dropout and
// its backward (semantics: ../counter_dropout.cpp).
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

// output = (relu ? relu(input) : input) * (kept ? 1 / (1 - p) : 0); relu(x)
// is (x < 0 ? 0 : x), which keeps NaN as torch's relu does.
template <bool relu, typename scalar_t>
inline void masked_scale_range(const DropoutArgs<scalar_t>& a, int64_t begin,
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
    acc_t x = static_cast<acc_t>(input[i]);
    if (relu) x = x < acc_t(0) ? acc_t(0) : x;
    output[i] = static_cast<scalar_t>(x * factor);
  }
}

template <typename scalar_t>
void dropout_range(const DropoutArgs<scalar_t>& a, int64_t begin,
                   int64_t end) {
  masked_scale_range<false>(a, begin, end);
}

// AVX-512 and AVX2 variants for every dtype (cpu_isa.h)
DDETR_ISA_VARIANTS(dropout_range, DropoutArgs)

template <typename scalar_t>
void run_dropout(const DropoutArgs<scalar_t>& a, int64_t begin, int64_t end) {
  DDETR_DISPATCH_ISA(dropout_range, a, begin, end)
  dropout_range(a, begin, end);
}

// relu_counter_dropout: counter_dropout(relu(input)) in one pass, the mask
// and scale of counter_dropout with the same seed, so the two give the same
// output bit for bit.
template <typename scalar_t>
void relu_dropout_range(const DropoutArgs<scalar_t>& a, int64_t begin,
                        int64_t end) {
  masked_scale_range<true>(a, begin, end);
}

DDETR_ISA_VARIANTS(relu_dropout_range, DropoutArgs)

template <typename scalar_t>
void run_relu_dropout(const DropoutArgs<scalar_t>& a, int64_t begin,
                      int64_t end) {
  DDETR_DISPATCH_ISA(relu_dropout_range, a, begin, end)
  relu_dropout_range(a, begin, end);
}

// The backward of relu_counter_dropout from its output alone: an element
// passes its gradient (times the scale) exactly where the output is > 0,
// i.e. where it was kept and its input was > 0.
template <typename scalar_t>
struct ReluDropoutBackwardArgs {
  const scalar_t* grad_output;
  const scalar_t* output;
  scalar_t* grad_input;
  at::opmath_type<scalar_t> scale;
};

template <typename scalar_t>
void relu_dropout_backward_range(const ReluDropoutBackwardArgs<scalar_t>& a,
                                 int64_t begin, int64_t end) {
  using acc_t = at::opmath_type<scalar_t>;
  const scalar_t* __restrict__ grad_output = a.grad_output;
  const scalar_t* __restrict__ output = a.output;
  scalar_t* __restrict__ grad_input = a.grad_input;
  const acc_t scale = a.scale;
#pragma omp simd
  for (int64_t i = begin; i < end; ++i) {
    const acc_t factor =
        static_cast<acc_t>(output[i]) > acc_t(0) ? scale : acc_t(0);
    grad_input[i] =
        static_cast<scalar_t>(static_cast<acc_t>(grad_output[i]) * factor);
  }
}

DDETR_ISA_VARIANTS(relu_dropout_backward_range, ReluDropoutBackwardArgs)

template <typename scalar_t>
void run_relu_dropout_backward(const ReluDropoutBackwardArgs<scalar_t>& a,
                               int64_t begin, int64_t end) {
  DDETR_DISPATCH_ISA(relu_dropout_backward_range, a, begin, end)
  relu_dropout_backward_range(a, begin, end);
}

// keep when hash >= threshold: P(keep) = 1 - threshold / 2^32. The
// rounding is done on 64 bits: for p within 2^-33 of 1 (and p == 1) it
// gives 2^32, which no 32-bit hash reaches, so nothing is kept; as a
// uint32 it would wrap to 0 and keep everything, scaled by ~1e10. That
// case runs the same loop with threshold 0 and scale 0: output input * 0.
struct KeepRule {
  uint32_t threshold;
  bool drop_all;
};

KeepRule keep_rule(double p) {
  const int64_t rounded = std::llround(p * 4294967296.0);
  const bool drop_all = rounded > std::numeric_limits<uint32_t>::max();
  return {drop_all ? 0u : static_cast<uint32_t>(rounded), drop_all};
}

void check_input(const at::Tensor& input, double p, const char* op) {
  TORCH_CHECK_TYPE(input.is_floating_point(), op,
                   ": input must be floating point, got ",
                   input.scalar_type());
  TORCH_CHECK_VALUE(p >= 0.0 && p <= 1.0, op, ": p must be in [0, 1], got ",
                    p);
}

// counter_dropout (relu = false) or relu_counter_dropout (relu = true)
at::Tensor dropout_cpu(const at::Tensor& input, double p, int64_t seed,
                       bool relu) {
  check_input(input, p, relu ? "relu_counter_dropout" : "counter_dropout");
  const auto in = input.contiguous();
  auto out = at::empty(in.sizes(), in.options());
  const KeepRule rule = keep_rule(p);
  const uint64_t seed_bits = static_cast<uint64_t>(seed);
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, in.scalar_type(), "counter_dropout_cpu",
      [&] {
        using acc_t = at::opmath_type<scalar_t>;
        DropoutArgs<scalar_t> a{
            in.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(),
            static_cast<uint32_t>(seed_bits),
            static_cast<uint32_t>(seed_bits >> 32), rule.threshold,
            rule.drop_all ? acc_t(0) : acc_t(1) / acc_t(1 - p)};
        at::parallel_for(0, in.numel(), 1 << 15,
                         [&](int64_t begin, int64_t end) {
                           if (relu) {
                             run_relu_dropout(a, begin, end);
                           } else {
                             run_dropout(a, begin, end);
                           }
                         });
      });
  return out;
}

at::Tensor counter_dropout_cpu(const at::Tensor& input, double p,
                               int64_t seed) {
  return dropout_cpu(input, p, seed, false);
}

at::Tensor relu_counter_dropout_cpu(const at::Tensor& input, double p,
                                    int64_t seed) {
  return dropout_cpu(input, p, seed, true);
}

at::Tensor relu_counter_dropout_backward_cpu(const at::Tensor& grad_output,
                                             const at::Tensor& output,
                                             double p) {
  check_input(output, p, "relu_counter_dropout_backward");
  TORCH_CHECK_VALUE(grad_output.sizes() == output.sizes(),
                    "relu_counter_dropout_backward: grad_output of shape ",
                    grad_output.sizes(), " for an output of shape ",
                    output.sizes());
  TORCH_CHECK_TYPE(grad_output.scalar_type() == output.scalar_type(),
                   "relu_counter_dropout_backward: grad_output is ",
                   grad_output.scalar_type(), ", output ",
                   output.scalar_type());
  const auto grad = grad_output.contiguous();
  const auto out = output.contiguous();
  auto grad_input = at::empty(out.sizes(), out.options());
  const KeepRule rule = keep_rule(p);
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, out.scalar_type(),
      "relu_counter_dropout_backward_cpu", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        ReluDropoutBackwardArgs<scalar_t> a{
            grad.const_data_ptr<scalar_t>(), out.const_data_ptr<scalar_t>(),
            grad_input.mutable_data_ptr<scalar_t>(),
            rule.drop_all ? acc_t(0) : acc_t(1) / acc_t(1 - p)};
        at::parallel_for(0, out.numel(), 1 << 15,
                         [&](int64_t begin, int64_t end) {
                           run_relu_dropout_backward(a, begin, end);
                         });
      });
  return grad_input;
}

}  // namespace

TORCH_LIBRARY_IMPL(ddetr_plugin, CPU, m) {
  m.impl("counter_dropout", &counter_dropout_cpu);
  m.impl("relu_counter_dropout", &relu_counter_dropout_cpu);
  m.impl("relu_counter_dropout_backward",
         &relu_counter_dropout_backward_cpu);
}

}  // namespace ddetr_plugin
