// CUDA kernels of the multi-scale deformable attention operators. Shapes and
// semantics: ../msda.h; bilinear corners: ../msda_bilinear.h.
//
// Design
//   * Thread mapping: one thread group of G lanes (G a power of two <= 32,
//     never straddling a warp) per (b, q, m); the D channels, as vectors of
//     VEC elements, are spread over the lanes (channel vector vi belongs to
//     lane vi % G). G = min(32, next_pow2(D / VEC)), so D = 32 in float32 is
//     8 lanes with one float4 each and 4 heads share a warp.
//   * Vectorised loads: VEC is the largest of 16 bytes / sizeof(scalar_t)
//     (8 for half types, 4 float, 2 double), 4, 2, 1 that divides D and the
//     alignment of the data pointers; D = 3 or 71 run with VEC = 1.
//   * Each lane computes the corner rows and bilinear weights of a sample once
//     (not per channel) and reuses them for all its channels. All arithmetic
//     and accumulation is in at::opmath_type<scalar_t> (float for half types,
//     double for float64). No shared memory: any D, L, P work.
//   * Forward: every lane keeps NV (1, 2 or 4) vector accumulators; D larger
//     than G * NV * VEC is processed in channel chunks.
//   * Backward: per sample, each lane forms the partial dot products
//     s_k = <grad_out, value corner k> over its channels, the group reduces
//     the three needed linear combinations with warp shuffles, and lane 0
//     writes grad_attention_weights and grad_sampling_locations (no atomics,
//     deterministic). grad_value is scattered with atomicAdd into an opmath
//     buffer (float32 for half types, then cast; vector atomics on sm_90).
//   * Deterministic mode (at::globalContext().deterministicAlgorithms()):
//     grad_value comes from a separate atomic-free kernel. The queries are
//     split into C contiguous chunks; one group per (chunk, b, m) walks its
//     queries, levels and points serially in a fixed order and accumulates
//     into its own copy (chunk, b, :, m, :) of an opmath buffer (its lanes own
//     disjoint channels, so no two threads touch one address); a second
//     kernel sums the C copies in chunk order. C is bounded by a memory
//     budget, so this mode is slower but bitwise reproducible.
//   * 64-bit indexing for every offset into value/output/grad tensors; grid-
//     stride loops, so grid sizes never overflow. Every value row is checked
//     against [0, S), so inconsistent spatial_shapes/level_start_index on the
//     GPU (only CPU tensors get their values checked) never read or write out
//     of bounds; corners outside the map contribute zero.
#include <ATen/Context.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/core/ScalarType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <tuple>
#include <type_traits>

#include "../msda.h"
#include "../msda_bilinear.h"

namespace ddetr_plugin {
namespace {

constexpr int kThreadsPerBlock = 256;  // a multiple of the warp size
constexpr int kWarpSize = 32;
// Grid-stride loops cover any amount of work; this only bounds the grid.
constexpr int64_t kMaxBlocks = int64_t{1} << 24;
// Deterministic grad_value: aim for this many (chunk, b, m) groups ...
constexpr int64_t kDeterministicTargetGroups = 4096;
// ... but spend at most this many bytes on the per-chunk copies.
constexpr int64_t kDeterministicBudgetBytes = int64_t{512} << 20;

// ----------------------------------------------------------------------------
// Device helpers
// ----------------------------------------------------------------------------

template <typename T, int N>
struct alignas(sizeof(T) * N) AlignedVec {
  T val[N];
};

// Loads N consecutive elements (ptr aligned to N * sizeof(scalar_t)) and
// converts them to the accumulation type.
template <int N, typename scalar_t, typename acc_t>
__device__ __forceinline__ void load_vec(const scalar_t* __restrict__ ptr,
                                         acc_t (&out)[N]) {
  const AlignedVec<scalar_t, N> v =
      *reinterpret_cast<const AlignedVec<scalar_t, N>*>(ptr);
#pragma unroll
  for (int j = 0; j < N; ++j) {
    out[j] = static_cast<acc_t>(v.val[j]);
  }
}

template <int N, typename scalar_t, typename acc_t>
__device__ __forceinline__ void store_vec(scalar_t* __restrict__ ptr,
                                          const acc_t (&in)[N]) {
  AlignedVec<scalar_t, N> v;
#pragma unroll
  for (int j = 0; j < N; ++j) {
    v.val[j] = static_cast<scalar_t>(in[j]);
  }
  *reinterpret_cast<AlignedVec<scalar_t, N>*>(ptr) = v;
}

__device__ __forceinline__ void atomic_add(float* ptr, float v) {
  atomicAdd(ptr, v);
}

__device__ __forceinline__ void atomic_add(double* ptr, double v) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 600
  // No native double atomicAdd before sm_60: compare-and-swap loop.
  unsigned long long* address = reinterpret_cast<unsigned long long*>(ptr);
  unsigned long long old = *address;
  unsigned long long assumed;
  do {
    assumed = old;
    old = atomicCAS(address, assumed,
                    __double_as_longlong(v + __longlong_as_double(assumed)));
  } while (assumed != old);
#else
  atomicAdd(ptr, v);
#endif
}

// ptr[j] += in[j] atomically per element.
template <int N, typename acc_t>
__device__ __forceinline__ void atomic_add_scalars(acc_t* ptr,
                                                   const acc_t (&in)[N]) {
#pragma unroll
  for (int j = 0; j < N; ++j) {
    atomic_add(ptr + j, in[j]);
  }
}

// Same, with vector atomics where the hardware has them: ptr is aligned to
// N * sizeof(float) (the buffer is freshly allocated and every offset is a
// multiple of N).
template <int N>
__device__ __forceinline__ void atomic_add_vec(float* ptr,
                                               const float (&in)[N]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900 && \
    !defined(DDETR_PLUGIN_NO_VECTOR_ATOMICS)
  // float2/float4 atomics on global memory: compute capability 9.x and newer.
  if constexpr (N % 4 == 0) {
#pragma unroll
    for (int j = 0; j < N; j += 4) {
      atomicAdd(reinterpret_cast<float4*>(ptr + j),
                make_float4(in[j], in[j + 1], in[j + 2], in[j + 3]));
    }
  } else if constexpr (N == 2) {
    atomicAdd(reinterpret_cast<float2*>(ptr), make_float2(in[0], in[1]));
  } else {
    atomic_add_scalars<N>(ptr, in);
  }
#else
  atomic_add_scalars<N>(ptr, in);
#endif
}

template <int N>
__device__ __forceinline__ void atomic_add_vec(double* ptr,
                                               const double (&in)[N]) {
  atomic_add_scalars<N>(ptr, in);
}

// Mask of the lanes of this thread's group (groups are aligned, G | 32).
__device__ __forceinline__ unsigned group_lane_mask(int group_size) {
  if (group_size >= kWarpSize) {
    return 0xffffffffu;
  }
  const unsigned lane_in_warp = threadIdx.x & (kWarpSize - 1);
  const unsigned first = lane_in_warp & ~static_cast<unsigned>(group_size - 1);
  return ((1u << group_size) - 1u) << first;
}

// Sum over the G lanes of a group; every lane gets the result. Must be
// reached by all lanes of the group.
template <typename T>
__device__ __forceinline__ T group_sum(T v, unsigned mask, int group_size) {
  for (int offset = group_size >> 1; offset > 0; offset >>= 1) {
    v += __shfl_xor_sync(mask, v, offset, group_size);
  }
  return v;
}

// Walks the L x P sampling points of one (b, q, m) level by level and calls
// f(idx, H, W, bl, sampled) for each: idx = l * P + p indexes its location and
// weight in `loc` / the attention weights, (H, W) is its level's size and bl
// its corners, filled only when `sampled` (BilinearCorners::init).
template <typename acc_t, typename scalar_t, typename F>
__device__ __forceinline__ void for_each_point(
    const scalar_t* __restrict__ loc,
    const int64_t* __restrict__ spatial_shapes,
    const int64_t* __restrict__ level_start_index, const int64_t L,
    const int64_t P, const int64_t S, const F& f) {
  for (int64_t l = 0; l < L; ++l) {
    const int64_t H = spatial_shapes[2 * l];
    const int64_t W = spatial_shapes[2 * l + 1];
    const int64_t start = level_start_index[l];
    for (int64_t p = 0; p < P; ++p) {
      const int64_t idx = l * P + p;
      BilinearCorners<acc_t> bl;
      const bool sampled =
          bl.init(static_cast<acc_t>(loc[2 * idx]),
                  static_cast<acc_t>(loc[2 * idx + 1]), H, W, start, S);
      f(idx, H, W, bl, sampled);
    }
  }
}

// for_each_point restricted to the points that sample something: calls
// f(a, bl) with a the point's attention weight (from `attn`) and bl its
// corners.
template <typename acc_t, typename scalar_t, typename F>
__device__ __forceinline__ void for_each_sampled_point(
    const scalar_t* __restrict__ loc, const scalar_t* __restrict__ attn,
    const int64_t* __restrict__ spatial_shapes,
    const int64_t* __restrict__ level_start_index, const int64_t L,
    const int64_t P, const int64_t S, const F& f) {
  for_each_point<acc_t>(
      loc, spatial_shapes, level_start_index, L, P, S,
      [&](int64_t idx, int64_t, int64_t, const BilinearCorners<acc_t>& bl,
          bool sampled) {
        if (sampled) {
          f(static_cast<acc_t>(attn[idx]), bl);
        }
      });
}

// ----------------------------------------------------------------------------
// Kernels
// ----------------------------------------------------------------------------

// Forward. One group of `group_size` lanes per (b, q, m); each lane owns the
// channel vectors c0 + i * G + lane (i < NV) of each channel chunk c0.
template <typename scalar_t, int VEC, int NV>
__global__ void __launch_bounds__(kThreadsPerBlock) msda_forward_kernel(
    const scalar_t* __restrict__ value,
    const int64_t* __restrict__ spatial_shapes,
    const int64_t* __restrict__ level_start_index,
    const scalar_t* __restrict__ sampling_locations,
    const scalar_t* __restrict__ attention_weights,
    scalar_t* __restrict__ output, const int64_t num_bqm, const int64_t S,
    const int64_t QM, const int64_t M, const int64_t D, const int64_t L,
    const int64_t P, const int group_size) {
  using acc_t = at::opmath_type<scalar_t>;
  const int lane = threadIdx.x & (group_size - 1);
  const int64_t groups_per_block = kThreadsPerBlock / group_size;
  const int64_t nvec = D / VEC;
  const int64_t row_stride = M * D;  // elements between value rows
  const int64_t chunk = static_cast<int64_t>(NV) * group_size;

  for (int64_t bqm = blockIdx.x * groups_per_block + threadIdx.x / group_size;
       bqm < num_bqm; bqm += gridDim.x * groups_per_block) {
    const int64_t b = bqm / QM;
    const int64_t m = bqm % M;
    const scalar_t* value_bm = value + (b * S * M + m) * D;
    const scalar_t* loc = sampling_locations + bqm * L * P * 2;
    const scalar_t* attn = attention_weights + bqm * L * P;
    scalar_t* out = output + bqm * D;

    for (int64_t c0 = 0; c0 < nvec; c0 += chunk) {
      acc_t acc[NV][VEC];
#pragma unroll
      for (int i = 0; i < NV; ++i) {
#pragma unroll
        for (int j = 0; j < VEC; ++j) {
          acc[i][j] = acc_t(0);
        }
      }
      for_each_sampled_point<acc_t>(
          loc, attn, spatial_shapes, level_start_index, L, P, S,
          [&](acc_t a, const BilinearCorners<acc_t>& bl) {
#pragma unroll
            for (int k = 0; k < 4; ++k) {
              if (!bl.inside[k]) {
                continue;
              }
              const acc_t wk = a * bl.weight[k];
              const scalar_t* src = value_bm + bl.row[k] * row_stride;
#pragma unroll
              for (int i = 0; i < NV; ++i) {
                const int64_t vi = c0 + i * group_size + lane;
                if (vi < nvec) {
                  acc_t v[VEC];
                  load_vec<VEC>(src + vi * VEC, v);
#pragma unroll
                  for (int j = 0; j < VEC; ++j) {
                    acc[i][j] += wk * v[j];
                  }
                }
              }
            }
          });
#pragma unroll
      for (int i = 0; i < NV; ++i) {
        const int64_t vi = c0 + i * group_size + lane;
        if (vi < nvec) {
          store_vec<VEC>(out + vi * VEC, acc[i]);
        }
      }
    }
  }
}

// Backward. Same mapping as the forward. Writes every element of grad_loc and
// grad_attn (zeros for points that sample nothing). grad_value (an opmath
// buffer shaped like value) is accumulated with atomics unless it is null
// (deterministic mode computes it with msda_grad_value_deterministic_kernel).
template <typename scalar_t, int VEC>
__global__ void __launch_bounds__(kThreadsPerBlock) msda_backward_kernel(
    const scalar_t* __restrict__ grad_output,
    const scalar_t* __restrict__ value,
    const int64_t* __restrict__ spatial_shapes,
    const int64_t* __restrict__ level_start_index,
    const scalar_t* __restrict__ sampling_locations,
    const scalar_t* __restrict__ attention_weights,
    at::opmath_type<scalar_t>* __restrict__ grad_value,
    scalar_t* __restrict__ grad_sampling_locations,
    scalar_t* __restrict__ grad_attention_weights, const int64_t num_bqm,
    const int64_t S, const int64_t QM, const int64_t M, const int64_t D,
    const int64_t L, const int64_t P, const int group_size) {
  using acc_t = at::opmath_type<scalar_t>;
  const int lane = threadIdx.x & (group_size - 1);
  const unsigned mask = group_lane_mask(group_size);
  const int64_t groups_per_block = kThreadsPerBlock / group_size;
  const int64_t nvec = D / VEC;
  const int64_t row_stride = M * D;
  const bool scatter_grad_value = grad_value != nullptr;

  for (int64_t bqm = blockIdx.x * groups_per_block + threadIdx.x / group_size;
       bqm < num_bqm; bqm += gridDim.x * groups_per_block) {
    const int64_t b = bqm / QM;
    const int64_t m = bqm % M;
    const int64_t bm_offset = (b * S * M + m) * D;
    const scalar_t* value_bm = value + bm_offset;
    const scalar_t* grad_out = grad_output + bqm * D;
    const scalar_t* loc = sampling_locations + bqm * L * P * 2;
    const scalar_t* attn = attention_weights + bqm * L * P;
    scalar_t* grad_loc = grad_sampling_locations + bqm * L * P * 2;
    scalar_t* grad_attn = grad_attention_weights + bqm * L * P;

    for_each_point<acc_t>(
        loc, spatial_shapes, level_start_index, L, P, S,
        [&](int64_t idx, int64_t H, int64_t W,
            const BilinearCorners<acc_t>& bl, bool sampled) {
          const acc_t a = static_cast<acc_t>(attn[idx]);
          // Per-lane partial sums over this lane's channels of
          //   d out / d a      = sum_k w_k s_k
          //   d out / d w_im   = a * (hh (s1 - s0) + lh (s3 - s2))
          //   d out / d h_im   = a * (hw (s2 - s0) + lw (s3 - s1))
          // with s_k = <grad_out, value at corner k> (0 for corners outside).
          acc_t part_attn = acc_t(0);
          acc_t part_w = acc_t(0);
          acc_t part_h = acc_t(0);
          if (sampled) {
            acc_t s[4] = {acc_t(0), acc_t(0), acc_t(0), acc_t(0)};
            for (int64_t vi = lane; vi < nvec; vi += group_size) {
              acc_t g[VEC];
              load_vec<VEC>(grad_out + vi * VEC, g);
#pragma unroll
              for (int k = 0; k < 4; ++k) {
                if (!bl.inside[k]) {
                  continue;
                }
                const int64_t offset = bl.row[k] * row_stride + vi * VEC;
                acc_t v[VEC];
                load_vec<VEC>(value_bm + offset, v);
#pragma unroll
                for (int j = 0; j < VEC; ++j) {
                  s[k] += g[j] * v[j];
                }
                if (scatter_grad_value) {
                  const acc_t wk = a * bl.weight[k];
                  acc_t upd[VEC];
#pragma unroll
                  for (int j = 0; j < VEC; ++j) {
                    upd[j] = wk * g[j];
                  }
                  atomic_add_vec<VEC>(grad_value + bm_offset + offset, upd);
                }
              }
            }
            part_attn = bl.weight[0] * s[0] + bl.weight[1] * s[1] +
                        bl.weight[2] * s[2] + bl.weight[3] * s[3];
            part_w = bl.hh * (s[1] - s[0]) + bl.lh * (s[3] - s[2]);
            part_h = bl.hw * (s[2] - s[0]) + bl.lw * (s[3] - s[1]);
          }
          // Reached by every lane of the group (outside the branch above).
          part_attn = group_sum(part_attn, mask, group_size);
          part_w = group_sum(part_w, mask, group_size);
          part_h = group_sum(part_h, mask, group_size);
          if (lane == 0) {
            grad_attn[idx] = static_cast<scalar_t>(part_attn);
            grad_loc[2 * idx] =
                static_cast<scalar_t>(a * static_cast<acc_t>(W) * part_w);
            grad_loc[2 * idx + 1] =
                static_cast<scalar_t>(a * static_cast<acc_t>(H) * part_h);
          }
        });
  }
}

// Deterministic grad_value. One group per (chunk, b, m) walks the queries
// [chunk * q_per_chunk, (chunk + 1) * q_per_chunk) and all levels and points
// in order and adds a * w_k * grad_out into its own copy
//   partial[chunk, b, row, m, :]   (partial: (num_chunks, B, S, M, D), zeroed)
// Lanes own disjoint channels and groups own disjoint copies: no atomics.
template <typename scalar_t, int VEC>
__global__ void __launch_bounds__(kThreadsPerBlock)
    msda_grad_value_deterministic_kernel(
        const scalar_t* __restrict__ grad_output,
        const int64_t* __restrict__ spatial_shapes,
        const int64_t* __restrict__ level_start_index,
        const scalar_t* __restrict__ sampling_locations,
        const scalar_t* __restrict__ attention_weights,
        at::opmath_type<scalar_t>* __restrict__ partial,
        const int64_t num_groups, const int64_t B, const int64_t S,
        const int64_t Q, const int64_t M, const int64_t D, const int64_t L,
        const int64_t P, const int64_t q_per_chunk, const int group_size) {
  using acc_t = at::opmath_type<scalar_t>;
  const int lane = threadIdx.x & (group_size - 1);
  const int64_t groups_per_block = kThreadsPerBlock / group_size;
  const int64_t nvec = D / VEC;
  const int64_t row_stride = M * D;

  for (int64_t gid = blockIdx.x * groups_per_block + threadIdx.x / group_size;
       gid < num_groups; gid += gridDim.x * groups_per_block) {
    const int64_t m = gid % M;
    const int64_t b = (gid / M) % B;
    const int64_t c = gid / (M * B);
    acc_t* grad_value_bm = partial + ((c * B + b) * S * M + m) * D;
    const int64_t q_begin = c * q_per_chunk;
    const int64_t q_end =
        q_begin + q_per_chunk < Q ? q_begin + q_per_chunk : Q;
    for (int64_t q = q_begin; q < q_end; ++q) {
      const int64_t bqm = (b * Q + q) * M + m;
      const scalar_t* grad_out = grad_output + bqm * D;
      const scalar_t* loc = sampling_locations + bqm * L * P * 2;
      const scalar_t* attn = attention_weights + bqm * L * P;
      for_each_sampled_point<acc_t>(
          loc, attn, spatial_shapes, level_start_index, L, P, S,
          [&](acc_t a, const BilinearCorners<acc_t>& bl) {
            for (int64_t vi = lane; vi < nvec; vi += group_size) {
              acc_t g[VEC];
              load_vec<VEC>(grad_out + vi * VEC, g);
#pragma unroll
              for (int k = 0; k < 4; ++k) {
                if (!bl.inside[k]) {
                  continue;
                }
                const acc_t wk = a * bl.weight[k];
                acc_t* dst =
                    grad_value_bm + bl.row[k] * row_stride + vi * VEC;
#pragma unroll
                for (int j = 0; j < VEC; ++j) {
                  dst[j] += wk * g[j];
                }
              }
            }
          });
    }
  }
}

// out[e] = sum_{c < num_chunks} partial[c * n + e], summed in chunk order and
// cast to the output dtype (num_chunks = 1: a plain cast).
template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreadsPerBlock) sum_chunks_kernel(
    const acc_t* __restrict__ partial, scalar_t* __restrict__ out,
    const int64_t n, const int64_t num_chunks) {
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
       e < n; e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    acc_t sum = acc_t(0);
    for (int64_t c = 0; c < num_chunks; ++c) {
      sum += partial[c * n + e];
    }
    out[e] = static_cast<scalar_t>(sum);
  }
}

// ----------------------------------------------------------------------------
// Launch planning (host)
// ----------------------------------------------------------------------------

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Blocks for `work_items` items at `items_per_block` per block; at least 1,
// at most kMaxBlocks (the kernels' grid-stride loops cover the rest).
inline unsigned int grid_size(int64_t work_items, int64_t items_per_block) {
  return static_cast<unsigned int>(std::max<int64_t>(
      1, std::min(ceil_div(work_items, items_per_block), kMaxBlocks)));
}

inline bool is_aligned(const void* ptr, int64_t bytes) {
  return reinterpret_cast<uintptr_t>(ptr) % static_cast<uintptr_t>(bytes) ==
         0;
}

// Largest vector width (in elements, at most 16 bytes) that divides D and to
// which every pointer is aligned.
template <typename scalar_t>
int pick_vec(int64_t D, std::initializer_list<const void*> ptrs) {
  int vec = static_cast<int>(16 / sizeof(scalar_t));
  for (; vec > 1; vec /= 2) {
    bool ok = D % vec == 0;
    for (const void* p : ptrs) {
      ok = ok && is_aligned(p, vec * static_cast<int64_t>(sizeof(scalar_t)));
    }
    if (ok) {
      break;
    }
  }
  return vec;
}

// Lanes per group: the power of two >= the channel vectors, at most a warp.
inline int pick_group_size(int64_t nvec) {
  int g = 1;
  while (g < kWarpSize && g < nvec) {
    g *= 2;
  }
  return g;
}

// Calls f(std::integral_constant<int, VEC>{}) for vec in {1, 2, 4, 8},
// instantiating only widths of at most 16 bytes.
template <typename scalar_t, typename F>
void dispatch_vec(int vec, const F& f) {
  if constexpr (sizeof(scalar_t) <= 2) {
    if (vec == 8) {
      return f(std::integral_constant<int, 8>{});
    }
  }
  if constexpr (sizeof(scalar_t) <= 4) {
    if (vec == 4) {
      return f(std::integral_constant<int, 4>{});
    }
  }
  if (vec == 2) {
    return f(std::integral_constant<int, 2>{});
  }
  TORCH_INTERNAL_ASSERT(vec == 1, "msda: unexpected vector width ", vec);
  return f(std::integral_constant<int, 1>{});
}

// Query chunks of the deterministic grad_value kernel: enough (chunk, b, m)
// groups to fill the GPU, within the memory budget, no empty chunk.
inline int64_t plan_deterministic_chunks(int64_t B, int64_t Q, int64_t M,
                                         int64_t copy_bytes) {
  int64_t num_chunks = ceil_div(kDeterministicTargetGroups, B * M);
  num_chunks = std::min(num_chunks, Q);
  num_chunks = std::min(
      num_chunks,
      std::max<int64_t>(1, kDeterministicBudgetBytes / std::max<int64_t>(
                                                           1, copy_bytes)));
  num_chunks = std::max<int64_t>(num_chunks, 1);
  const int64_t q_per_chunk = ceil_div(Q, num_chunks);
  return ceil_div(Q, q_per_chunk);
}

// Forward on `stream`. Inputs are checked (check_msda_inputs) and contiguous.
at::Tensor forward(cudaStream_t stream, const at::Tensor& value,
                   const at::Tensor& spatial_shapes,
                   const at::Tensor& level_start_index,
                   const at::Tensor& sampling_locations,
                   const at::Tensor& attention_weights) {
  const MsdaSizes d = msda_sizes(value, sampling_locations);

  at::Tensor output = at::empty(
      {d.batch, d.num_queries, d.num_heads * d.head_dim}, value.options());
  if (output.numel() == 0) {
    return output;
  }
  const int64_t num_bqm = d.batch * d.num_queries * d.num_heads;

  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, value.scalar_type(),
      "multi_scale_deformable_attn_cuda", [&] {
        const int vec = pick_vec<scalar_t>(
            d.head_dim, {value.const_data_ptr(), output.const_data_ptr()});
        const int64_t nvec = d.head_dim / vec;
        const int group_size = pick_group_size(nvec);
        const int64_t per_lane = ceil_div(nvec, group_size);
        const unsigned int blocks =
            grid_size(num_bqm, kThreadsPerBlock / group_size);
        dispatch_vec<scalar_t>(vec, [&](auto vec_c) {
          constexpr int VEC = decltype(vec_c)::value;
          auto run = [&](auto nv_c) {
            constexpr int NV = decltype(nv_c)::value;
            msda_forward_kernel<scalar_t, VEC, NV>
                <<<blocks, kThreadsPerBlock, 0, stream>>>(
                    value.const_data_ptr<scalar_t>(),
                    spatial_shapes.const_data_ptr<int64_t>(),
                    level_start_index.const_data_ptr<int64_t>(),
                    sampling_locations.const_data_ptr<scalar_t>(),
                    attention_weights.const_data_ptr<scalar_t>(),
                    output.mutable_data_ptr<scalar_t>(), num_bqm,
                    d.num_value, d.num_queries * d.num_heads, d.num_heads,
                    d.head_dim, d.num_levels, d.num_points, group_size);
            C10_CUDA_KERNEL_LAUNCH_CHECK();
          };
          if (per_lane <= 1) {
            run(std::integral_constant<int, 1>{});
          } else if (per_lane <= 2) {
            run(std::integral_constant<int, 2>{});
          } else {
            run(std::integral_constant<int, 4>{});
          }
        });
      });
  return output;
}

// Backward on `stream`. Inputs are checked (check_msda_backward_inputs) and
// contiguous. Returns (grad_value, grad_sampling_locations,
// grad_attention_weights). `deterministic` selects the atomic-free grad_value
// kernel.
std::tuple<at::Tensor, at::Tensor, at::Tensor> backward(
    cudaStream_t stream, bool deterministic, const at::Tensor& grad_output,
    const at::Tensor& value, const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
    const at::Tensor& attention_weights) {
  const MsdaSizes d = msda_sizes(value, sampling_locations);
  const int64_t num_bqm = d.batch * d.num_queries * d.num_heads;
  const int64_t value_numel = value.numel();
  // any_work: some point is sampled by some (b, q, m); value_work: and the
  // sampled values have elements to receive gradient.
  const bool any_work = num_bqm > 0 && d.num_levels * d.num_points > 0;
  const bool value_work = any_work && value_numel > 0;

  at::Tensor grad_loc =
      at::empty(sampling_locations.sizes(), sampling_locations.options());
  at::Tensor grad_attn =
      at::empty(attention_weights.sizes(), attention_weights.options());
  at::Tensor grad_value;

  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, value.scalar_type(),
      "multi_scale_deformable_attn_backward_cuda", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const auto acc_options =
            value.options().dtype(c10::CppTypeToScalarType<acc_t>::value);

        int64_t num_chunks = 1;
        if (deterministic && value_work) {
          num_chunks = plan_deterministic_chunks(
              d.batch, d.num_queries, d.num_heads,
              value_numel * static_cast<int64_t>(sizeof(acc_t)));
        }
        const int64_t q_per_chunk = ceil_div(d.num_queries, num_chunks);
        // The kernels accumulate grad_value in `accum`: grad_value itself when
        // its dtype is the opmath type and there is one chunk, else an opmath
        // buffer (num_chunks, B, S, M, D) that sum_chunks_kernel reduces in
        // chunk order and casts into grad_value.
        const bool direct =
            std::is_same_v<acc_t, scalar_t> && num_chunks == 1;
        at::Tensor accum;
        if (direct) {
          grad_value = at::zeros(value.sizes(), value.options());
          accum = grad_value;
        } else {
          grad_value = at::empty(value.sizes(), value.options());
          accum = at::zeros(
              {num_chunks, d.batch, d.num_value, d.num_heads, d.head_dim},
              acc_options);
        }

        if (any_work) {
          const int vec = pick_vec<scalar_t>(
              d.head_dim,
              {value.const_data_ptr(), grad_output.const_data_ptr()});
          const int64_t nvec = d.head_dim / vec;
          const int group_size = pick_group_size(nvec);
          const int64_t groups_per_block = kThreadsPerBlock / group_size;
          dispatch_vec<scalar_t>(vec, [&](auto vec_c) {
            constexpr int VEC = decltype(vec_c)::value;
            acc_t* atomic_target = (deterministic || !value_work)
                                       ? nullptr
                                       : accum.mutable_data_ptr<acc_t>();
            msda_backward_kernel<scalar_t, VEC>
                <<<grid_size(num_bqm, groups_per_block), kThreadsPerBlock, 0,
                   stream>>>(
                    grad_output.const_data_ptr<scalar_t>(),
                    value.const_data_ptr<scalar_t>(),
                    spatial_shapes.const_data_ptr<int64_t>(),
                    level_start_index.const_data_ptr<int64_t>(),
                    sampling_locations.const_data_ptr<scalar_t>(),
                    attention_weights.const_data_ptr<scalar_t>(),
                    atomic_target, grad_loc.mutable_data_ptr<scalar_t>(),
                    grad_attn.mutable_data_ptr<scalar_t>(), num_bqm,
                    d.num_value, d.num_queries * d.num_heads, d.num_heads,
                    d.head_dim, d.num_levels, d.num_points, group_size);
            C10_CUDA_KERNEL_LAUNCH_CHECK();
            if (deterministic && value_work) {
              const int64_t num_groups = num_chunks * d.batch * d.num_heads;
              msda_grad_value_deterministic_kernel<scalar_t, VEC>
                  <<<grid_size(num_groups, groups_per_block),
                     kThreadsPerBlock, 0, stream>>>(
                      grad_output.const_data_ptr<scalar_t>(),
                      spatial_shapes.const_data_ptr<int64_t>(),
                      level_start_index.const_data_ptr<int64_t>(),
                      sampling_locations.const_data_ptr<scalar_t>(),
                      attention_weights.const_data_ptr<scalar_t>(),
                      accum.mutable_data_ptr<acc_t>(), num_groups, d.batch,
                      d.num_value, d.num_queries, d.num_heads, d.head_dim,
                      d.num_levels, d.num_points, q_per_chunk, group_size);
              C10_CUDA_KERNEL_LAUNCH_CHECK();
            }
          });
        } else {
          grad_loc.zero_();
          grad_attn.zero_();
        }

        if (!direct && value_numel > 0) {
          sum_chunks_kernel<scalar_t, acc_t>
              <<<grid_size(value_numel, kThreadsPerBlock), kThreadsPerBlock, 0,
                 stream>>>(accum.const_data_ptr<acc_t>(),
                           grad_value.mutable_data_ptr<scalar_t>(),
                           value_numel, num_chunks);
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        }
      });
  return std::make_tuple(grad_value, grad_loc, grad_attn);
}

at::Tensor msda_forward_cuda(const at::Tensor& value,
                             const at::Tensor& spatial_shapes,
                             const at::Tensor& level_start_index,
                             const at::Tensor& sampling_locations,
                             const at::Tensor& attention_weights) {
  check_msda_inputs(value, spatial_shapes, level_start_index,
                    sampling_locations, attention_weights);
  const c10::cuda::CUDAGuard device_guard(value.device());
  return forward(c10::cuda::getCurrentCUDAStream().stream(),
                 value.contiguous(), spatial_shapes.contiguous(),
                 level_start_index.contiguous(),
                 sampling_locations.contiguous(),
                 attention_weights.contiguous());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> msda_backward_cuda(
    const at::Tensor& grad_output, const at::Tensor& value,
    const at::Tensor& spatial_shapes, const at::Tensor& level_start_index,
    const at::Tensor& sampling_locations,
    const at::Tensor& attention_weights) {
  check_msda_backward_inputs(grad_output, value, spatial_shapes,
                             level_start_index, sampling_locations,
                             attention_weights);
  const c10::cuda::CUDAGuard device_guard(value.device());
  return backward(c10::cuda::getCurrentCUDAStream().stream(),
                  at::globalContext().deterministicAlgorithms(),
                  grad_output.contiguous(), value.contiguous(),
                  spatial_shapes.contiguous(), level_start_index.contiguous(),
                  sampling_locations.contiguous(),
                  attention_weights.contiguous());
}

}  // namespace

TORCH_LIBRARY_IMPL(ddetr_plugin, CUDA, m) {
  m.impl("multi_scale_deformable_attn", &msda_forward_cuda);
  m.impl("_multi_scale_deformable_attn_backward", &msda_backward_cuda);
}

}  // namespace ddetr_plugin
