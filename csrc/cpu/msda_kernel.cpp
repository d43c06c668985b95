// CPU kernels of the multi-scale deformable attention operators. Shapes and
// semantics: ../msda.h; bilinear corners: ../msda_bilinear.h.
//
// Parallel work and determinism:
//   forward   parallel over (batch, query, head); every output element is
//             written by exactly one task.
//   backward  parallel over (batch, head); grad_value rows of one
//             (batch, head) are touched only by that task, and each
//             task walks queries and points in a fixed order, so the result
//             is race-free and bitwise deterministic for any thread count.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>
#include <type_traits>
#include <vector>

#include "../msda.h"
#include "../msda_bilinear.h"

namespace ddetr_plugin {
namespace {

// out[c] += sum_k w[k] * v[k][c]; corners outside the map point at a zero row.
template <typename scalar_t, typename acc_t>
inline void blend(acc_t* __restrict__ out, const scalar_t* __restrict__ v0,
                  const scalar_t* __restrict__ v1,
                  const scalar_t* __restrict__ v2,
                  const scalar_t* __restrict__ v3, const acc_t* w,
                  int64_t channels) {
  const acc_t w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3];
#pragma omp simd
  for (int64_t c = 0; c < channels; ++c) {
    out[c] += w0 * static_cast<acc_t>(v0[c]) + w1 * static_cast<acc_t>(v1[c]) +
              w2 * static_cast<acc_t>(v2[c]) + w3 * static_cast<acc_t>(v3[c]);
  }
}

// Pointers and sizes of one call; kernels index with int64 throughout.
template <typename scalar_t>
struct Args {
  MsdaSizes d;
  const scalar_t* value;
  const int64_t* shapes;
  const int64_t* starts;
  const scalar_t* loc;
  const scalar_t* attn;
  scalar_t* out;                          // forward
  const scalar_t* grad_out;               // backward
  at::opmath_type<scalar_t>* grad_value;  // backward
  scalar_t* grad_loc;                     // backward
  scalar_t* grad_attn;                    // backward
};

// Forward for the (batch, query, head) items [begin, end).
template <typename scalar_t>
void forward_range(const Args<scalar_t>& a, int64_t begin, int64_t end) {
  using acc_t = at::opmath_type<scalar_t>;
  const MsdaSizes& d = a.d;
  const int64_t D = d.head_dim;
  const int64_t value_row_stride = d.num_heads * D;  // stride of one token
  const int64_t samples = d.num_levels * d.num_points;
  std::vector<acc_t> acc(D);
  const std::vector<scalar_t> zeros(D, scalar_t(0));
  for (int64_t n = begin; n < end; ++n) {
    const int64_t m = n % d.num_heads;
    const int64_t b = n / (d.num_heads * d.num_queries);
    const scalar_t* value_bm =
        a.value + b * d.num_value * value_row_stride + m * D;
    const scalar_t* loc_n = a.loc + n * samples * 2;
    const scalar_t* attn_n = a.attn + n * samples;
    std::fill(acc.begin(), acc.end(), acc_t(0));
    for (int64_t l = 0; l < d.num_levels; ++l) {
      for (int64_t p = 0; p < d.num_points; ++p) {
        const int64_t s = l * d.num_points + p;
        BilinearCorners<acc_t> f;
        if (!f.init(static_cast<acc_t>(loc_n[2 * s]),
                    static_cast<acc_t>(loc_n[2 * s + 1]), a.shapes[2 * l],
                    a.shapes[2 * l + 1], a.starts[l], d.num_value)) {
          continue;
        }
        const acc_t weight = static_cast<acc_t>(attn_n[s]);
        const scalar_t* v[4];
        acc_t w[4];
        for (int k = 0; k < 4; ++k) {
          v[k] = f.inside[k] ? value_bm + f.row[k] * value_row_stride
                             : zeros.data();
          w[k] = weight * f.weight[k];
        }
        blend(acc.data(), v[0], v[1], v[2], v[3], w, D);
      }
    }
    scalar_t* out_n = a.out + n * D;
    for (int64_t c = 0; c < D; ++c) out_n[c] = static_cast<scalar_t>(acc[c]);
  }
}

// For one sampling point: dot[k] = <g, v[k]> and gv[k][c] += w[k] * g[c].
// Corners outside the map read a zero row and write a scratch row.
template <typename scalar_t, typename acc_t>
inline void blend_backward(const scalar_t* __restrict__ g,
                           const scalar_t* const* v, acc_t* const* gv,
                           const acc_t* w, acc_t* dot, int64_t channels) {
  const scalar_t* __restrict__ v0 = v[0];
  const scalar_t* __restrict__ v1 = v[1];
  const scalar_t* __restrict__ v2 = v[2];
  const scalar_t* __restrict__ v3 = v[3];
  acc_t* __restrict__ gv0 = gv[0];
  acc_t* __restrict__ gv1 = gv[1];
  acc_t* __restrict__ gv2 = gv[2];
  acc_t* __restrict__ gv3 = gv[3];
  const acc_t w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3];
  acc_t d0 = 0, d1 = 0, d2 = 0, d3 = 0;
#pragma omp simd reduction(+ : d0, d1, d2, d3)
  for (int64_t c = 0; c < channels; ++c) {
    const acc_t gc = static_cast<acc_t>(g[c]);
    d0 += gc * static_cast<acc_t>(v0[c]);
    d1 += gc * static_cast<acc_t>(v1[c]);
    d2 += gc * static_cast<acc_t>(v2[c]);
    d3 += gc * static_cast<acc_t>(v3[c]);
    gv0[c] += w0 * gc;
    gv1[c] += w1 * gc;
    gv2[c] += w2 * gc;
    gv3[c] += w3 * gc;
  }
  dot[0] = d0;
  dot[1] = d1;
  dot[2] = d2;
  dot[3] = d3;
}

// Backward for the (batch, head) tasks [begin, end). grad_value rows of one
// (batch, head) are written by that task alone, in a fixed order.
template <typename scalar_t>
void backward_range(const Args<scalar_t>& a, int64_t begin, int64_t end) {
  using acc_t = at::opmath_type<scalar_t>;
  const MsdaSizes& d = a.d;
  const int64_t D = d.head_dim;
  const int64_t value_row_stride = d.num_heads * D;
  const int64_t samples = d.num_levels * d.num_points;
  const std::vector<scalar_t> zeros(D, scalar_t(0));
  std::vector<acc_t> scratch(D);
  for (int64_t task = begin; task < end; ++task) {
    const int64_t m = task % d.num_heads;
    const int64_t b = task / d.num_heads;
    const int64_t value_offset = b * d.num_value * value_row_stride + m * D;
    const scalar_t* value_bm = a.value + value_offset;
    acc_t* grad_value_bm = a.grad_value + value_offset;
    for (int64_t q = 0; q < d.num_queries; ++q) {
      const int64_t n = (b * d.num_queries + q) * d.num_heads + m;
      const scalar_t* g = a.grad_out + n * D;
      for (int64_t l = 0; l < d.num_levels; ++l) {
        const int64_t height = a.shapes[2 * l], width = a.shapes[2 * l + 1];
        for (int64_t p = 0; p < d.num_points; ++p) {
          const int64_t s = n * samples + l * d.num_points + p;
          BilinearCorners<acc_t> f;
          if (!f.init(static_cast<acc_t>(a.loc[2 * s]),
                      static_cast<acc_t>(a.loc[2 * s + 1]), height, width,
                      a.starts[l], d.num_value)) {
            a.grad_attn[s] = scalar_t(0);
            a.grad_loc[2 * s] = scalar_t(0);
            a.grad_loc[2 * s + 1] = scalar_t(0);
            continue;
          }
          const acc_t weight = static_cast<acc_t>(a.attn[s]);
          const scalar_t* v[4];
          acc_t* gv[4];
          acc_t w[4];
          for (int k = 0; k < 4; ++k) {
            v[k] = f.inside[k] ? value_bm + f.row[k] * value_row_stride
                               : zeros.data();
            gv[k] = f.inside[k] ? grad_value_bm + f.row[k] * value_row_stride
                                : scratch.data();
            w[k] = weight * f.weight[k];
          }
          acc_t dot[4];  // <grad_out, corner value>
          blend_backward(g, v, gv, w, dot, D);
          a.grad_attn[s] = static_cast<scalar_t>(
              f.weight[0] * dot[0] + f.weight[1] * dot[1] +
              f.weight[2] * dot[2] + f.weight[3] * dot[3]);
          // d(sample)/d(lw) and d(sample)/d(lh), chain rule to x and y
          const acc_t d_lw =
              f.hh * (dot[1] - dot[0]) + f.lh * (dot[3] - dot[2]);
          const acc_t d_lh =
              f.hw * (dot[2] - dot[0]) + f.lw * (dot[3] - dot[1]);
          a.grad_loc[2 * s] = static_cast<scalar_t>(
              weight * static_cast<acc_t>(width) * d_lw);
          a.grad_loc[2 * s + 1] = static_cast<scalar_t>(
              weight * static_cast<acc_t>(height) * d_lh);
        }
      }
    }
  }
}

// float and double get clones for AVX-512 and AVX2 (picked at load time by
// the CPU's features) with the hot loops inlined and vectorised for them.
#if defined(__x86_64__) && defined(__GNUC__)
#define MSDA_CPU_CLONES \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"), flatten))
#else
#define MSDA_CPU_CLONES
#endif

#define MSDA_CLONED_RANGES(T)                                                 \
  MSDA_CPU_CLONES void forward_range_##T(const Args<T>& a, int64_t begin,    \
                                         int64_t end) {                       \
    forward_range(a, begin, end);                                             \
  }                                                                           \
  MSDA_CPU_CLONES void backward_range_##T(const Args<T>& a, int64_t begin,   \
                                          int64_t end) {                      \
    backward_range(a, begin, end);                                            \
  }
MSDA_CLONED_RANGES(float)
MSDA_CLONED_RANGES(double)
#undef MSDA_CLONED_RANGES

template <typename scalar_t>
void run_forward(const Args<scalar_t>& a, int64_t begin, int64_t end) {
  if constexpr (std::is_same_v<scalar_t, float>) {
    forward_range_float(a, begin, end);
  } else if constexpr (std::is_same_v<scalar_t, double>) {
    forward_range_double(a, begin, end);
  } else {
    forward_range(a, begin, end);
  }
}

template <typename scalar_t>
void run_backward(const Args<scalar_t>& a, int64_t begin, int64_t end) {
  if constexpr (std::is_same_v<scalar_t, float>) {
    backward_range_float(a, begin, end);
  } else if constexpr (std::is_same_v<scalar_t, double>) {
    backward_range_double(a, begin, end);
  } else {
    backward_range(a, begin, end);
  }
}

// Contiguous copies of the (checked) inputs of one call and the Args pointers
// into them.
struct Inputs {
  at::Tensor value, shapes, starts, loc, attn;
  MsdaSizes d;

  Inputs(const at::Tensor& value_, const at::Tensor& spatial_shapes,
         const at::Tensor& level_start_index,
         const at::Tensor& sampling_locations,
         const at::Tensor& attention_weights) {
    value = value_.contiguous();
    shapes = spatial_shapes.contiguous();
    starts = level_start_index.contiguous();
    loc = sampling_locations.contiguous();
    attn = attention_weights.contiguous();
    d = msda_sizes(value, loc);
  }

  template <typename scalar_t>
  Args<scalar_t> args() const {
    Args<scalar_t> a{};
    a.d = d;
    a.value = value.const_data_ptr<scalar_t>();
    a.shapes = shapes.const_data_ptr<int64_t>();
    a.starts = starts.const_data_ptr<int64_t>();
    a.loc = loc.const_data_ptr<scalar_t>();
    a.attn = attn.const_data_ptr<scalar_t>();
    return a;
  }
};

at::Tensor msda_forward_cpu(const at::Tensor& value,
                            const at::Tensor& spatial_shapes,
                            const at::Tensor& level_start_index,
                            const at::Tensor& sampling_locations,
                            const at::Tensor& attention_weights) {
  check_msda_inputs(value, spatial_shapes, level_start_index,
                    sampling_locations, attention_weights);
  const Inputs in(value, spatial_shapes, level_start_index,
                  sampling_locations, attention_weights);
  const MsdaSizes& d = in.d;
  auto out = at::empty({d.batch, d.num_queries, d.num_heads * d.head_dim},
                       in.value.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, in.value.scalar_type(), "msda_forward_cpu",
      [&] {
        auto a = in.args<scalar_t>();
        a.out = out.mutable_data_ptr<scalar_t>();
        at::parallel_for(0, d.batch * d.num_queries * d.num_heads, 16,
                         [&](int64_t begin, int64_t end) {
                           run_forward(a, begin, end);
                         });
      });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> msda_backward_cpu(
    const at::Tensor& grad_output, const at::Tensor& value,
    const at::Tensor& spatial_shapes, const at::Tensor& level_start_index,
    const at::Tensor& sampling_locations, const at::Tensor& attention_weights) {
  check_msda_backward_inputs(grad_output, value, spatial_shapes,
                             level_start_index, sampling_locations,
                             attention_weights);
  const Inputs in(value, spatial_shapes, level_start_index,
                  sampling_locations, attention_weights);
  const MsdaSizes& d = in.d;
  const auto dtype = in.value.scalar_type();
  const auto g = grad_output.contiguous();
  auto grad_value = at::zeros(
      in.value.sizes(), in.value.options().dtype(at::toOpMathType(dtype)));
  auto grad_loc = at::empty(in.loc.sizes(), in.loc.options());
  auto grad_attn = at::empty(in.attn.sizes(), in.attn.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, dtype, "msda_backward_cpu", [&] {
        auto a = in.args<scalar_t>();
        a.grad_out = g.const_data_ptr<scalar_t>();
        a.grad_value = grad_value.mutable_data_ptr<at::opmath_type<scalar_t>>();
        a.grad_loc = grad_loc.mutable_data_ptr<scalar_t>();
        a.grad_attn = grad_attn.mutable_data_ptr<scalar_t>();
        // one task per (batch, head): disjoint grad_value rows
        at::parallel_for(0, d.batch * d.num_heads, 1,
                         [&](int64_t begin, int64_t end) {
                           run_backward(a, begin, end);
                         });
      });
  return {grad_value.to(dtype), grad_loc, grad_attn};
}

}  // namespace

TORCH_LIBRARY_IMPL(ddetr_plugin, CPU, m) {
  m.impl("multi_scale_deformable_attn", &msda_forward_cpu);
  m.impl("_multi_scale_deformable_attn_backward", &msda_backward_cpu);
}

}  // namespace ddetr_plugin
