// CPU kernels of the multi-scale deformable attention operators. Shapes and
// semantics: ../msda.h. The bilinear corners of a query's samples are
// computed together, vectorised over the samples (ItemCorners; the same
// footprint as BilinearCorners in ../msda_bilinear.h, which the CUDA kernels
// use one sample at a time).
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
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <tuple>
#include <type_traits>
#include <vector>

#include "../msda.h"
#include "cpu_isa.h"

namespace ddetr_plugin {
namespace {

// Pointers and sizes of one call; element offsets are int64 throughout, value
// rows within one (batch, head) int32 (S < 2^31 is checked).
template <typename scalar_t>
struct Args {
  MsdaSizes d;
  const scalar_t* value;
  const int64_t* shapes;
  const int64_t* starts;
  const scalar_t* loc;
  const scalar_t* attn;
  scalar_t* out;             // forward
  const scalar_t* grad_out;  // backward
  scalar_t* grad_value;      // backward
  scalar_t* grad_loc;        // backward
  scalar_t* grad_attn;       // backward
};

// The level of each sample s = level * num_points + point, as arrays over s
// so the corner loop below reads them like the locations.
template <typename acc_t>
struct SampleLevels {
  std::vector<acc_t> height, width;         // pixels, as acc_t
  std::vector<int32_t> height_i, width_i;   // pixels
  std::vector<int32_t> start;               // first value row of the level

  explicit SampleLevels(const MsdaSizes& d, const int64_t* shapes,
                        const int64_t* starts) {
    const int64_t samples = d.num_levels * d.num_points;
    height.resize(samples), width.resize(samples);
    height_i.resize(samples), width_i.resize(samples), start.resize(samples);
    for (int64_t s = 0; s < samples; ++s) {
      const int64_t l = s / d.num_points;
      height_i[s] = static_cast<int32_t>(shapes[2 * l]);
      width_i[s] = static_cast<int32_t>(shapes[2 * l + 1]);
      height[s] = static_cast<acc_t>(shapes[2 * l]);
      width[s] = static_cast<acc_t>(shapes[2 * l + 1]);
      start[s] = static_cast<int32_t>(starts[l]);
    }
  }
};

// The bilinear corners of the samples of one (batch, query, head) item, in
// structure-of-arrays form (index 4 * s + k for sample s, corner k; corner
// order and sampling semantics as BilinearCorners in ../msda_bilinear.h).
// Corners outside the map, and every corner of a point outside it (or NaN),
// get row `zero_row` and zero weights, so the blend loops need no branches.
template <typename acc_t>
struct ItemCorners {
  std::vector<int32_t> row;           // value row in [0, S], S = zero_row
  std::vector<acc_t> value_weight;    // attention weight * bilinear weight
  // backward: grad_attention = sum_k bilinear[k] * <grad_out, v_k>, and
  // grad_x / grad_y = sum_k d_x[k] / d_y[k] * <grad_out, v_k>
  std::vector<acc_t> bilinear, d_x, d_y;

  // per sample: the pixel at or above and left of the point (-2 for a point
  // that samples nothing), and the fractional parts of its coordinates
  std::vector<int32_t> h_low, w_low;
  std::vector<acc_t> lh, lw;

  explicit ItemCorners(int64_t samples)
      : row(4 * samples), value_weight(4 * samples), bilinear(4 * samples),
        d_x(4 * samples), d_y(4 * samples), h_low(samples), w_low(samples),
        lh(samples), lw(samples) {}

  // Fills the corners of the samples of the item whose locations (x, y
  // interleaved, normalised) and attention weights start at loc and attn;
  // kWithGrad fills bilinear, d_x and d_y too. Two loops without branches
  // (selects only; the extension is built with -fno-trapping-math so that
  // compares may be if-converted), each vectorised over the samples: the
  // floating-point footprint, then the integer rows and the weights.
  template <bool kWithGrad, typename scalar_t>
  void fill(const SampleLevels<acc_t>& lv, const scalar_t* __restrict__ loc,
            const scalar_t* __restrict__ attn, int64_t samples,
            int32_t zero_row) {
    const acc_t* __restrict__ lv_h = lv.height.data();
    const acc_t* __restrict__ lv_w = lv.width.data();
    int32_t* __restrict__ hl = h_low.data();
    int32_t* __restrict__ wl = w_low.data();
    acc_t* __restrict__ fh = lh.data();
    acc_t* __restrict__ fw = lw.data();
#pragma omp simd
    for (int64_t s = 0; s < samples; ++s) {
      const acc_t height = lv_h[s], width = lv_w[s];
      const acc_t x = static_cast<acc_t>(loc[2 * s]);
      const acc_t y = static_cast<acc_t>(loc[2 * s + 1]);
      const acc_t h_im = y * height - acc_t(0.5);
      const acc_t w_im = x * width - acc_t(0.5);
      // false for NaN too
      const bool valid = h_im > acc_t(-1) && w_im > acc_t(-1) &&
                         h_im < height && w_im < width;
      const acc_t h_safe = valid ? h_im : acc_t(-2);
      const acc_t w_safe = valid ? w_im : acc_t(-2);
      const acc_t h_floor = std::floor(h_safe), w_floor = std::floor(w_safe);
      hl[s] = static_cast<int32_t>(h_floor);
      wl[s] = static_cast<int32_t>(w_floor);
      fh[s] = h_safe - h_floor;
      fw[s] = w_safe - w_floor;
    }
    const int32_t* __restrict__ lv_hi = lv.height_i.data();
    const int32_t* __restrict__ lv_wi = lv.width_i.data();
    const int32_t* __restrict__ lv_start = lv.start.data();
    int32_t* __restrict__ rows = row.data();
    acc_t* __restrict__ vw = value_weight.data();
    acc_t* __restrict__ bl = bilinear.data();
    acc_t* __restrict__ dx = d_x.data();
    acc_t* __restrict__ dy = d_y.data();
#pragma omp simd
    for (int64_t s = 0; s < samples; ++s) {
      const int32_t h = hl[s], w = wl[s], width = lv_wi[s];
      // a point inside the map has h, w >= -1; one outside has -2
      const bool h0 = h >= 0, h1 = (h >= -1) & (h + 1 < lv_hi[s]);
      const bool w0 = w >= 0, w1 = (w >= -1) & (w + 1 < width);
      const bool in0 = h0 & w0, in1 = h0 & w1, in2 = h1 & w0, in3 = h1 & w1;
      const int32_t base = lv_start[s] + h * width + w;
      rows[4 * s + 0] = in0 ? base : zero_row;
      rows[4 * s + 1] = in1 ? base + 1 : zero_row;
      rows[4 * s + 2] = in2 ? base + width : zero_row;
      rows[4 * s + 3] = in3 ? base + width + 1 : zero_row;
      const acc_t lh_s = fh[s], lw_s = fw[s];
      const acc_t hh_s = acc_t(1) - lh_s, hw_s = acc_t(1) - lw_s;
      const acc_t w00 = hh_s * hw_s, w01 = hh_s * lw_s, w10 = lh_s * hw_s,
                  w11 = lh_s * lw_s;
      const acc_t a = static_cast<acc_t>(attn[s]);
      vw[4 * s + 0] = in0 ? a * w00 : acc_t(0);
      vw[4 * s + 1] = in1 ? a * w01 : acc_t(0);
      vw[4 * s + 2] = in2 ? a * w10 : acc_t(0);
      vw[4 * s + 3] = in3 ? a * w11 : acc_t(0);
      if constexpr (kWithGrad) {
        bl[4 * s + 0] = in0 ? w00 : acc_t(0);
        bl[4 * s + 1] = in1 ? w01 : acc_t(0);
        bl[4 * s + 2] = in2 ? w10 : acc_t(0);
        bl[4 * s + 3] = in3 ? w11 : acc_t(0);
        // d(sample)/d(lw) = hh (v1 - v0) + lh (v3 - v2), times a * width;
        // d(sample)/d(lh) = hw (v2 - v0) + lw (v3 - v1), times a * height
        const bool valid = h >= -1;
        const acc_t ax = valid ? a * lv_w[s] : acc_t(0);
        const acc_t ay = valid ? a * lv_h[s] : acc_t(0);
        dx[4 * s + 0] = -ax * hh_s;
        dx[4 * s + 1] = ax * hh_s;
        dx[4 * s + 2] = -ax * lh_s;
        dx[4 * s + 3] = ax * lh_s;
        dy[4 * s + 0] = -ay * hw_s;
        dy[4 * s + 1] = -ay * lw_s;
        dy[4 * s + 2] = ay * hw_s;
        dy[4 * s + 3] = ay * lw_s;
      }
    }
  }
};

// out[c] += sum_k w[k] * v[k][c]
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

// Forward for the (batch, query, head) items [begin, end).
template <typename scalar_t>
void forward_range(const Args<scalar_t>& a, int64_t begin, int64_t end) {
  using acc_t = at::opmath_type<scalar_t>;
  const MsdaSizes& d = a.d;
  const int64_t D = d.head_dim;
  const int64_t value_row_stride = d.num_heads * D;  // stride of one token
  const int64_t samples = d.num_levels * d.num_points;
  const int32_t zero_row = static_cast<int32_t>(d.num_value);
  const SampleLevels<acc_t> levels(d, a.shapes, a.starts);
  ItemCorners<acc_t> corners(samples);
  std::vector<acc_t> acc(D);
  const std::vector<scalar_t> zeros(D, scalar_t(0));
  for (int64_t n = begin; n < end; ++n) {
    const int64_t m = n % d.num_heads;
    const int64_t b = n / (d.num_heads * d.num_queries);
    const scalar_t* value_bm =
        a.value + b * d.num_value * value_row_stride + m * D;
    corners.template fill<false>(levels, a.loc + n * samples * 2,
                                 a.attn + n * samples, samples, zero_row);
    std::fill(acc.begin(), acc.end(), acc_t(0));
    for (int64_t s = 0; s < samples; ++s) {
      const scalar_t* v[4];
      for (int k = 0; k < 4; ++k) {
        const int32_t row = corners.row[4 * s + k];
        v[k] = row == zero_row ? zeros.data()
                               : value_bm + row * value_row_stride;
      }
      blend(acc.data(), v[0], v[1], v[2], v[3],
            corners.value_weight.data() + 4 * s, D);
    }
    scalar_t* out_n = a.out + n * D;
    for (int64_t c = 0; c < D; ++c) out_n[c] = static_cast<scalar_t>(acc[c]);
  }
}

// 32-byte vectors (8 floats, 4 doubles) of GCC's vector extensions: AVX
// registers in the AVX2 and AVX-512 variants, SSE pairs in the baseline.
template <typename acc_t>
struct Vec32 {
  typedef acc_t type __attribute__((vector_size(32)));
  static constexpr int64_t lanes = 32 / sizeof(acc_t);
};

template <typename vec_t, typename acc_t>
inline vec_t load_vec(const acc_t* p) {
  vec_t x;
  std::memcpy(&x, p, sizeof(x));
  return x;
}

template <typename vec_t, typename acc_t>
inline void store_vec(acc_t* p, vec_t x) {
  std::memcpy(p, &x, sizeof(x));
}

// out = {sum(a), sum(b), sum(c), sum(d)} over the lanes, by a transposing
// add tree (three shuffle-add steps instead of 4 x 7 scalar adds).
inline void sum_lanes4(Vec32<float>::type a, Vec32<float>::type b,
                       Vec32<float>::type c, Vec32<float>::type d,
                       float* out) {
  typedef float vec4 __attribute__((vector_size(16)));
  // [a0+a4 .. a3+a7, b0+b4 .. b3+b7], [c.., d..]
  const auto ab = __builtin_shufflevector(a, b, 0, 1, 2, 3, 8, 9, 10, 11) +
                  __builtin_shufflevector(a, b, 4, 5, 6, 7, 12, 13, 14, 15);
  const auto cd = __builtin_shufflevector(c, d, 0, 1, 2, 3, 8, 9, 10, 11) +
                  __builtin_shufflevector(c, d, 4, 5, 6, 7, 12, 13, 14, 15);
  // [a, a, c, c, b, b, d, d], two partial sums each
  const auto x = __builtin_shufflevector(ab, cd, 0, 1, 8, 9, 4, 5, 12, 13) +
                 __builtin_shufflevector(ab, cd, 2, 3, 10, 11, 6, 7, 14, 15);
  const vec4 y = __builtin_shufflevector(x, x, 0, 4, 2, 6) +
                 __builtin_shufflevector(x, x, 1, 5, 3, 7);
  std::memcpy(out, &y, sizeof(y));
}

inline void sum_lanes4(Vec32<double>::type a, Vec32<double>::type b,
                       Vec32<double>::type c, Vec32<double>::type d,
                       double* out) {
  // [a0+a2, a1+a3, b0+b2, b1+b3], [c.., d..]
  const auto ab = __builtin_shufflevector(a, b, 0, 1, 4, 5) +
                  __builtin_shufflevector(a, b, 2, 3, 6, 7);
  const auto cd = __builtin_shufflevector(c, d, 0, 1, 4, 5) +
                  __builtin_shufflevector(c, d, 2, 3, 6, 7);
  const auto y = __builtin_shufflevector(ab, cd, 0, 2, 4, 6) +
                 __builtin_shufflevector(ab, cd, 1, 3, 5, 7);
  std::memcpy(out, &y, sizeof(y));
}

// For one sampling point: dot[k] = <g, v[k]> and gv[k][c] += w[k] * g[c].
// Corners outside the map read the zero row and write the scratch row (all
// four may be that one row: the updates are sequential, never reordered).
template <typename acc_t>
inline void blend_backward(const acc_t* g, const acc_t* const* v,
                           acc_t* const* gv, const acc_t* w, acc_t* dot,
                           int64_t channels) {
  using vec = typename Vec32<acc_t>::type;
  constexpr int64_t lanes = Vec32<acc_t>::lanes;
  vec d0{}, d1{}, d2{}, d3{};
  int64_t c = 0;
  for (; c + lanes <= channels; c += lanes) {
    const vec gc = load_vec<vec>(g + c);
    d0 += gc * load_vec<vec>(v[0] + c);
    d1 += gc * load_vec<vec>(v[1] + c);
    d2 += gc * load_vec<vec>(v[2] + c);
    d3 += gc * load_vec<vec>(v[3] + c);
    store_vec(gv[0] + c, load_vec<vec>(gv[0] + c) + w[0] * gc);
    store_vec(gv[1] + c, load_vec<vec>(gv[1] + c) + w[1] * gc);
    store_vec(gv[2] + c, load_vec<vec>(gv[2] + c) + w[2] * gc);
    store_vec(gv[3] + c, load_vec<vec>(gv[3] + c) + w[3] * gc);
  }
  sum_lanes4(d0, d1, d2, d3, dot);
  for (; c < channels; ++c) {
    for (int k = 0; k < 4; ++k) {
      dot[k] += g[c] * v[k][c];
      gv[k][c] += w[k] * g[c];
    }
  }
}

// Copies `rows` rows of `width` elements, `src_stride` apart in src, to
// consecutive rows of dst (or back, with the strides swapped), converting.
template <typename dst_t, typename src_t>
inline void copy_rows(dst_t* __restrict__ dst, int64_t dst_stride,
                      const src_t* __restrict__ src, int64_t src_stride,
                      int64_t rows, int64_t width) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < width; ++c) {
      dst[r * dst_stride + c] = static_cast<dst_t>(src[r * src_stride + c]);
    }
  }
}

// Queries whose grad_output rows, locations and weights the backward copies
// at a time: bounds the per-query slices (about 60 KiB at 8 x 32 channels,
// 4 levels x 4 points) whatever the number of queries.
constexpr int64_t kQueryChunk = 128;

// Backward for the (batch, head) tasks [begin, end). One head's rows sit
// num_heads rows apart in every tensor of the op (value, grad_output,
// sampling_locations, attention_weights and their gradients), so a task
// first copies its head's rows into contiguous slices: value in acc_t with
// a zero row S appended for corners outside the map, grad_output in acc_t,
// locations and weights (kQueryChunk queries at a time); it accumulates
// grad_value in an acc_t slice (plus a scratch row S) and the location and
// weight gradients in slices, then copies them out. The copies are tight
// loops the memory system overlaps; the scatter of each sample's four corner
// updates then stays in L2.
// grad_value rows of one (batch, head) are written by that task alone, in a
// fixed order (queries, levels, points): race-free and bitwise
// deterministic for any thread count.
template <typename scalar_t>
void backward_range(const Args<scalar_t>& a, int64_t begin, int64_t end) {
  using acc_t = at::opmath_type<scalar_t>;
  const MsdaSizes& d = a.d;
  const int64_t D = d.head_dim;
  const int64_t S = d.num_value;
  const int64_t Q = d.num_queries;
  const int64_t row_stride = d.num_heads * D;  // value, grad_output
  const int64_t samples = d.num_levels * d.num_points;
  const int64_t sample_stride = d.num_heads * samples;  // locations, weights
  const int32_t zero_row = static_cast<int32_t>(S);
  const SampleLevels<acc_t> levels(d, a.shapes, a.starts);
  ItemCorners<acc_t> corners(samples);
  std::vector<acc_t> value_slice((S + 1) * D, acc_t(0));  // row S: zeros
  std::vector<acc_t> grad_value_slice((S + 1) * D);       // row S: scratch
  // per-query slices, kQueryChunk queries at a time
  const int64_t chunk = std::min(Q, kQueryChunk);
  std::vector<acc_t> grad_out_slice(chunk * D);
  std::vector<scalar_t> loc_slice(chunk * samples * 2);
  std::vector<scalar_t> attn_slice(chunk * samples);
  std::vector<scalar_t> grad_loc_slice(chunk * samples * 2);
  std::vector<scalar_t> grad_attn_slice(chunk * samples);
  std::vector<acc_t> dots(4 * samples);  // <grad_out, corner value>
  for (int64_t task = begin; task < end; ++task) {
    const int64_t m = task % d.num_heads;
    const int64_t b = task / d.num_heads;
    const int64_t value_offset = b * S * row_stride + m * D;
    copy_rows(value_slice.data(), D, a.value + value_offset, row_stride, S, D);
    std::fill(grad_value_slice.begin(), grad_value_slice.end(), acc_t(0));
    for (int64_t q0 = 0; q0 < Q; q0 += chunk) {
      const int64_t rows = std::min(chunk, Q - q0);
      const int64_t item = (b * Q + q0) * d.num_heads + m;  // (b, q0, m)
      copy_rows(grad_out_slice.data(), D, a.grad_out + item * D, row_stride,
                rows, D);
      copy_rows(loc_slice.data(), samples * 2, a.loc + item * samples * 2,
                sample_stride * 2, rows, samples * 2);
      copy_rows(attn_slice.data(), samples, a.attn + item * samples,
                sample_stride, rows, samples);
      for (int64_t q = 0; q < rows; ++q) {
        corners.template fill<true>(levels, loc_slice.data() + q * samples * 2,
                                    attn_slice.data() + q * samples, samples,
                                    zero_row);
        const acc_t* g = grad_out_slice.data() + q * D;
        for (int64_t s = 0; s < samples; ++s) {
          const acc_t* v[4];
          acc_t* gv[4];
          for (int k = 0; k < 4; ++k) {
            const int64_t row = corners.row[4 * s + k];
            v[k] = value_slice.data() + row * D;
            gv[k] = grad_value_slice.data() + row * D;
          }
          blend_backward(g, v, gv, corners.value_weight.data() + 4 * s,
                         dots.data() + 4 * s, D);
        }
        scalar_t* grad_attn_q = grad_attn_slice.data() + q * samples;
        scalar_t* grad_loc_q = grad_loc_slice.data() + q * samples * 2;
        for (int64_t s = 0; s < samples; ++s) {
          acc_t grad_attn = 0, grad_x = 0, grad_y = 0;
          for (int k = 0; k < 4; ++k) {
            grad_attn += corners.bilinear[4 * s + k] * dots[4 * s + k];
            grad_x += corners.d_x[4 * s + k] * dots[4 * s + k];
            grad_y += corners.d_y[4 * s + k] * dots[4 * s + k];
          }
          grad_attn_q[s] = static_cast<scalar_t>(grad_attn);
          grad_loc_q[2 * s] = static_cast<scalar_t>(grad_x);
          grad_loc_q[2 * s + 1] = static_cast<scalar_t>(grad_y);
        }
      }
      copy_rows(a.grad_loc + item * samples * 2, sample_stride * 2,
                grad_loc_slice.data(), samples * 2, rows, samples * 2);
      copy_rows(a.grad_attn + item * samples, sample_stride,
                grad_attn_slice.data(), samples, rows, samples);
    }
    copy_rows(a.grad_value + value_offset, row_stride,
              grad_value_slice.data(), D, S, D);
  }
}

// AVX-512 and AVX2 variants of both ranges for every dtype (cpu_isa.h)
DDETR_ISA_VARIANTS(forward_range, Args)
DDETR_ISA_VARIANTS(backward_range, Args)

template <typename scalar_t>
void run_forward(const Args<scalar_t>& a, int64_t begin, int64_t end) {
  DDETR_DISPATCH_ISA(forward_range, a, begin, end)
  forward_range(a, begin, end);
}

template <typename scalar_t>
void run_backward(const Args<scalar_t>& a, int64_t begin, int64_t end) {
  DDETR_DISPATCH_ISA(backward_range, a, begin, end)
  backward_range(a, begin, end);
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
    TORCH_CHECK_VALUE(d.num_value < std::numeric_limits<int32_t>::max(),
                      "multi_scale_deformable_attn: the CPU kernel indexes "
                      "value rows with int32, value has S = ", d.num_value,
                      " tokens (at most 2^31 - 2)");
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
  const auto grad_out = grad_output.contiguous();
  auto grad_value = at::empty(in.value.sizes(), in.value.options());
  auto grad_loc = at::empty(in.loc.sizes(), in.loc.options());
  auto grad_attn = at::empty(in.attn.sizes(), in.attn.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, dtype, "msda_backward_cpu", [&] {
        auto a = in.args<scalar_t>();
        a.grad_out = grad_out.const_data_ptr<scalar_t>();
        a.grad_value = grad_value.mutable_data_ptr<scalar_t>();
        a.grad_loc = grad_loc.mutable_data_ptr<scalar_t>();
        a.grad_attn = grad_attn.mutable_data_ptr<scalar_t>();
        // one task per (batch, head): disjoint grad_value rows
        at::parallel_for(0, d.batch * d.num_heads, 1,
                         [&](int64_t begin, int64_t end) {
                           run_backward(a, begin, end);
                         });
      });
  return {grad_value, grad_loc, grad_attn};
}

}  // namespace

TORCH_LIBRARY_IMPL(ddetr_plugin, CPU, m) {
  m.impl("multi_scale_deformable_attn", &msda_forward_cpu);
  m.impl("_multi_scale_deformable_attn_backward", &msda_backward_cpu);
}

}  // namespace ddetr_plugin
