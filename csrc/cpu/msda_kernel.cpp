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
// structure-of-arrays form, corner-major (index k * samples + s for corner
// k of sample s, so each array is written with contiguous vector stores;
// corner order and sampling semantics as BilinearCorners in
// ../msda_bilinear.h). Corners outside the map, and every corner of a point
// outside it (or NaN), get row `zero_row` and zero weights, so the blend
// loops need no branches.
template <typename acc_t>
struct ItemCorners {
  std::vector<int32_t> row;         // value row in [0, S], S = zero_row
  std::vector<acc_t> value_weight;  // attention weight * bilinear weight

  // per sample: the pixel at or above and left of the point (-2 for a point
  // that samples nothing), and the fractional parts of its coordinates
  std::vector<int32_t> h_low, w_low;
  std::vector<acc_t> lh, lw;

  explicit ItemCorners(int64_t samples)
      : row(4 * samples), value_weight(4 * samples), h_low(samples),
        w_low(samples), lh(samples), lw(samples) {}

  // Fills the corners of the samples of the item whose locations (x, y
  // interleaved, normalised) and attention weights start at loc and attn.
  // Two loops without branches (selects only; the extension is built with
  // -fno-trapping-math so that compares may be if-converted), each
  // vectorised over the samples: the floating-point footprint, then the
  // integer rows and the weights.
  template <typename scalar_t>
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
    int32_t* __restrict__ row0 = row.data();
    int32_t* __restrict__ row1 = row0 + samples;
    int32_t* __restrict__ row2 = row1 + samples;
    int32_t* __restrict__ row3 = row2 + samples;
    acc_t* __restrict__ vw0 = value_weight.data();
    acc_t* __restrict__ vw1 = vw0 + samples;
    acc_t* __restrict__ vw2 = vw1 + samples;
    acc_t* __restrict__ vw3 = vw2 + samples;
#pragma omp simd
    for (int64_t s = 0; s < samples; ++s) {
      const int32_t h = hl[s], w = wl[s], width = lv_wi[s];
      // a point inside the map has h, w >= -1; one outside has -2
      const bool h0 = h >= 0, h1 = (h >= -1) & (h + 1 < lv_hi[s]);
      const bool w0 = w >= 0, w1 = (w >= -1) & (w + 1 < width);
      const bool in0 = h0 & w0, in1 = h0 & w1, in2 = h1 & w0, in3 = h1 & w1;
      const int32_t base = lv_start[s] + h * width + w;
      row0[s] = in0 ? base : zero_row;
      row1[s] = in1 ? base + 1 : zero_row;
      row2[s] = in2 ? base + width : zero_row;
      row3[s] = in3 ? base + width + 1 : zero_row;
      const acc_t lh_s = fh[s], lw_s = fw[s];
      const acc_t hh_s = acc_t(1) - lh_s, hw_s = acc_t(1) - lw_s;
      const acc_t a = static_cast<acc_t>(attn[s]);
      vw0[s] = in0 ? a * (hh_s * hw_s) : acc_t(0);
      vw1[s] = in1 ? a * (hh_s * lw_s) : acc_t(0);
      vw2[s] = in2 ? a * (lh_s * hw_s) : acc_t(0);
      vw3[s] = in3 ? a * (lh_s * lw_s) : acc_t(0);
    }
  }

  // The location and weight gradients of the item's samples from
  // dots[4 * s + k] = <grad_output, value row of corner k of sample s>:
  //   grad_attention = sum_k bilinear[k] * dot[k]
  //   grad_x = a * width * (hh (dot1 - dot0) + lh (dot3 - dot2))
  //   grad_y = a * height * (hw (dot2 - dot0) + lw (dot3 - dot1))
  // (d(sample)/d(lw) and d(sample)/d(lh) times the chain factors). A corner
  // outside the map read the zero row, so its dot is 0 and its term drops
  // out without a mask; a point outside the map gets 0 (NaN where
  // grad_output is NaN, as the terms would).
  template <typename scalar_t>
  void gradients(const SampleLevels<acc_t>& lv,
                 const scalar_t* __restrict__ attn,
                 const acc_t* __restrict__ dots, int64_t samples,
                 scalar_t* __restrict__ grad_attn,
                 scalar_t* __restrict__ grad_loc) const {
    const acc_t* __restrict__ lv_h = lv.height.data();
    const acc_t* __restrict__ lv_w = lv.width.data();
    const int32_t* __restrict__ hl = h_low.data();
    const acc_t* __restrict__ fh = lh.data();
    const acc_t* __restrict__ fw = lw.data();
#pragma omp simd
    for (int64_t s = 0; s < samples; ++s) {
      const acc_t lh_s = fh[s], lw_s = fw[s];
      const acc_t hh_s = acc_t(1) - lh_s, hw_s = acc_t(1) - lw_s;
      const acc_t d0 = dots[4 * s], d1 = dots[4 * s + 1],
                  d2 = dots[4 * s + 2], d3 = dots[4 * s + 3];
      const acc_t a = hl[s] >= -1 ? static_cast<acc_t>(attn[s]) : acc_t(0);
      const acc_t grad_a = hh_s * hw_s * d0 + hh_s * lw_s * d1 +
                           lh_s * hw_s * d2 + lh_s * lw_s * d3;
      const acc_t grad_lw = hh_s * (d1 - d0) + lh_s * (d3 - d2);
      const acc_t grad_lh = hw_s * (d2 - d0) + lw_s * (d3 - d1);
      grad_attn[s] = static_cast<scalar_t>(grad_a);
      grad_loc[2 * s] = static_cast<scalar_t>(a * lv_w[s] * grad_lw);
      grad_loc[2 * s + 1] = static_cast<scalar_t>(a * lv_h[s] * grad_lh);
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

// Forward for the (batch, query, head) items [begin, end). kHeadDim > 0 is
// head_dim known at compile time: for float and double the accumulator then
// stays in registers across an item's samples; 0 reads it from the sizes.
template <int64_t kHeadDim, typename scalar_t>
void forward_items(const Args<scalar_t>& a, int64_t begin, int64_t end) {
  using acc_t = at::opmath_type<scalar_t>;
  using vec = typename Vec32<acc_t>::type;
  constexpr int64_t lanes = Vec32<acc_t>::lanes;
  // float and double values are read as vectors directly; half types (and a
  // runtime head_dim) go through blend()
  constexpr bool kInRegisters = kHeadDim > 0 && kHeadDim % lanes == 0 &&
                                std::is_same_v<scalar_t, acc_t>;
  constexpr int64_t kVecs = kInRegisters ? kHeadDim / lanes : 1;
  const MsdaSizes& d = a.d;
  const int64_t D = kHeadDim > 0 ? kHeadDim : d.head_dim;
  const int64_t value_row_stride = d.num_heads * D;  // stride of one token
  const int64_t samples = d.num_levels * d.num_points;
  const int32_t zero_row = static_cast<int32_t>(d.num_value);
  const SampleLevels<acc_t> levels(d, a.shapes, a.starts);
  ItemCorners<acc_t> corners(samples);
  std::vector<acc_t> acc_buffer(D);
  acc_t* __restrict__ acc = acc_buffer.data();
  const std::vector<scalar_t> zeros(D, scalar_t(0));
  for (int64_t n = begin; n < end; ++n) {
    const int64_t m = n % d.num_heads;
    const int64_t b = n / (d.num_heads * d.num_queries);
    const scalar_t* value_bm =
        a.value + b * d.num_value * value_row_stride + m * D;
    corners.fill(levels, a.loc + n * samples * 2, a.attn + n * samples,
                 samples, zero_row);
    scalar_t* out_n = a.out + n * D;
    // kInRegisters: the accumulator in kVecs registers; otherwise in acc
    vec acc_vec[kVecs] = {};
    if constexpr (!kInRegisters) {
      for (int64_t c = 0; c < D; ++c) acc[c] = acc_t(0);
    }
    for (int64_t s = 0; s < samples; ++s) {
      acc_t w[4];
      const scalar_t* v[4];
      for (int k = 0; k < 4; ++k) {
        w[k] = corners.value_weight[k * samples + s];
        const int32_t row = corners.row[k * samples + s];
        v[k] = row == zero_row ? zeros.data()
                               : value_bm + row * value_row_stride;
      }
      if constexpr (kInRegisters) {
        // the same sums as blend()
        for (int64_t j = 0; j < kVecs; ++j) {
          const int64_t c = j * lanes;
          acc_vec[j] += w[0] * load_vec<vec>(v[0] + c) +
                        w[1] * load_vec<vec>(v[1] + c) +
                        w[2] * load_vec<vec>(v[2] + c) +
                        w[3] * load_vec<vec>(v[3] + c);
        }
      } else {
        blend(acc, v[0], v[1], v[2], v[3], w, D);
      }
    }
    if constexpr (kInRegisters) {
      for (int64_t j = 0; j < kVecs; ++j) {
        store_vec(out_n + j * lanes, acc_vec[j]);
      }
    } else {
      for (int64_t c = 0; c < D; ++c) {
        out_n[c] = static_cast<scalar_t>(acc[c]);
      }
    }
  }
}

// The head_dim of Deformable DETR and DINO (256 channels, 8 heads).
constexpr int64_t kCommonHeadDim = 32;

template <typename scalar_t>
void forward_range(const Args<scalar_t>& a, int64_t begin, int64_t end) {
  if (a.d.head_dim == kCommonHeadDim) {
    forward_items<kCommonHeadDim>(a, begin, end);
  } else {
    forward_items<0>(a, begin, end);
  }
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
// float and double rows of whole vectors move as vectors: GCC would turn
// the element loop into one memmove call per row, which costs more than the
// row at these widths (32 floats).
template <typename dst_t, typename src_t>
inline void copy_rows(dst_t* __restrict__ dst, int64_t dst_stride,
                      const src_t* __restrict__ src, int64_t src_stride,
                      int64_t rows, int64_t width) {
  if constexpr (std::is_same_v<dst_t, src_t> &&
                std::is_floating_point_v<dst_t>) {
    using vec = typename Vec32<dst_t>::type;
    constexpr int64_t lanes = Vec32<dst_t>::lanes;
    if (width % lanes == 0) {
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t c = 0; c < width; c += lanes) {
          store_vec(dst + r * dst_stride + c,
                    load_vec<vec>(src + r * src_stride + c));
        }
      }
      return;
    }
  }
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < width; ++c) {
      dst[r * dst_stride + c] = static_cast<dst_t>(src[r * src_stride + c]);
    }
  }
}

// One query of one head in the backward: adds w[k] * grad_output to the
// grad_value slice rows of its samples' corners (rows of D elements; row S,
// where corners outside the map point, reads zeros from the value slice and
// writes scratch: all four corners may be that one row, the updates are
// sequential, never reordered), and writes the query's location and weight
// gradients (its weights at attn_q). kHeadDim > 0: head_dim known at
// compile time, grad_output then stays in registers across the samples.
template <int64_t kHeadDim, typename acc_t, typename scalar_t>
inline void backward_query(const SampleLevels<acc_t>& levels,
                           const ItemCorners<acc_t>& corners, int64_t samples,
                           int64_t D, const acc_t* g, const acc_t* value_slice,
                           acc_t* grad_value_slice, acc_t* dots,
                           const scalar_t* attn_q, scalar_t* grad_attn_q,
                           scalar_t* grad_loc_q) {
  using vec = typename Vec32<acc_t>::type;
  constexpr int64_t lanes = Vec32<acc_t>::lanes;
  constexpr bool kInRegisters = kHeadDim > 0 && kHeadDim % lanes == 0;
  constexpr int64_t kVecs = kInRegisters ? kHeadDim / lanes : 1;
  vec g_vec[kVecs];
  if constexpr (kInRegisters) {
    for (int64_t j = 0; j < kVecs; ++j) g_vec[j] = load_vec<vec>(g + j * lanes);
  }
  for (int64_t s = 0; s < samples; ++s) {
    const acc_t* v[4];
    acc_t* gv[4];
    acc_t w[4];
    for (int k = 0; k < 4; ++k) {
      const int64_t row = corners.row[k * samples + s];
      v[k] = value_slice + row * D;
      gv[k] = grad_value_slice + row * D;
      w[k] = corners.value_weight[k * samples + s];
    }
    if constexpr (kInRegisters) {
      // blend_backward() with g in registers: the same sums
      vec d0{}, d1{}, d2{}, d3{};
      for (int64_t j = 0; j < kVecs; ++j) {
        const int64_t c = j * lanes;
        const vec gc = g_vec[j];
        d0 += gc * load_vec<vec>(v[0] + c);
        d1 += gc * load_vec<vec>(v[1] + c);
        d2 += gc * load_vec<vec>(v[2] + c);
        d3 += gc * load_vec<vec>(v[3] + c);
        store_vec(gv[0] + c, load_vec<vec>(gv[0] + c) + w[0] * gc);
        store_vec(gv[1] + c, load_vec<vec>(gv[1] + c) + w[1] * gc);
        store_vec(gv[2] + c, load_vec<vec>(gv[2] + c) + w[2] * gc);
        store_vec(gv[3] + c, load_vec<vec>(gv[3] + c) + w[3] * gc);
      }
      sum_lanes4(d0, d1, d2, d3, dots + 4 * s);
    } else {
      blend_backward(g, v, gv, w, dots + 4 * s, D);
    }
  }
  corners.gradients(levels, attn_q, dots, samples, grad_attn_q, grad_loc_q);
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
// updates then stays in L2. (Measured on the AVX2 machine: scattering into
// the strided grad_value in place took 1.5x as long, and reading the
// per-query rows in place instead of copying them 1.1x.)
// grad_value rows of one (batch, head) are written by that task alone, in a
// fixed order (queries, levels, points): race-free and bitwise
// deterministic for any thread count.
template <int64_t kHeadDim, typename scalar_t>
void backward_tasks(const Args<scalar_t>& a, int64_t begin, int64_t end) {
  using acc_t = at::opmath_type<scalar_t>;
  const MsdaSizes& d = a.d;
  const int64_t D = kHeadDim > 0 ? kHeadDim : d.head_dim;
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
        const scalar_t* attn_q = attn_slice.data() + q * samples;
        corners.fill(levels, loc_slice.data() + q * samples * 2, attn_q,
                     samples, zero_row);
        backward_query<kHeadDim>(levels, corners, samples, D,
                                 grad_out_slice.data() + q * D,
                                 value_slice.data(), grad_value_slice.data(),
                                 dots.data(), attn_q,
                                 grad_attn_slice.data() + q * samples,
                                 grad_loc_slice.data() + q * samples * 2);
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

template <typename scalar_t>
void backward_range(const Args<scalar_t>& a, int64_t begin, int64_t end) {
  if (a.d.head_dim == kCommonHeadDim) {
    backward_tasks<kCommonHeadDim>(a, begin, end);
  } else {
    backward_tasks<0>(a, begin, end);
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
