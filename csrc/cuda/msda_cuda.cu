// Multi-scale deformable attention (MSDA): CUDA kernels of the ddetr_plugin
// operators `multi_scale_deformable_attn` and
// `multi_scale_deformable_attn_backward` (schemas in csrc/msda.cpp).
//
// Zhu et al., "Deformable DETR: Deformable Transformers for End-to-End Object
// Detection", ICLR 2021, arXiv 2010.04159, Eq. (2):
//
//   out[b, q, m, :] = sum_l sum_p A[b, q, m, l, p] * V_l[b, :, m, :](loc[b, q, m, l, p])
//
// where V_l(.) samples level l bilinearly exactly like mmcv's
// multi_scale_deformable_attn_pytorch, i.e. F.grid_sample(mode='bilinear',
// padding_mode='zeros', align_corners=False): with (x, y) = loc,
// h_im = y * H_l - 0.5 and w_im = x * W_l - 0.5; a point samples nothing
// unless -1 < h_im < H_l and -1 < w_im < W_l, and each of its 4 corners
// contributes only when it lies inside the map.
//
// Shapes (B batch, S = sum_l H_l * W_l value tokens, M heads, D head_dim,
// Q queries, L levels, P points):
//   value               (B, S, M, D)         float64/float32/float16/bfloat16
//   spatial_shapes      (L, 2)  int64        (H_l, W_l), on the value's GPU
//   level_start_index   (L,)    int64        first token of level l in S
//   sampling_locations  (B, Q, M, L, P, 2)   value dtype, normalised (x, y)
//   attention_weights   (B, Q, M, L, P)      value dtype
//   output              (B, Q, M * D)        value dtype
//   grad_output         (B, Q, M * D) (or (B, Q, M, D)), value dtype
//   backward returns (grad_value, grad_sampling_locations,
//   grad_attention_weights) with the shapes and dtypes of the inputs.
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
//
// The kernels and their launch planning live in msda_cuda_kernels.cuh,
// written against an abstract launcher; this file supplies the CUDA one
// (current stream, launch checks) and registers the operators.
#include <ATen/Context.h>
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <cuda_runtime.h>

#include <tuple>

#include "../msda.h"
#include "msda_cuda_kernels.cuh"

namespace ddetr_plugin {
namespace {

// Runs a kernel of msda_cuda_kernels.cuh on `stream` and checks the launch.
struct CudaLauncher {
  cudaStream_t stream;

  template <typename... KernelArgs, typename... Args>
  void operator()(void (*kernel)(KernelArgs...), unsigned int blocks,
                  Args... args) const {
    kernel<<<blocks, msda_cuda::kThreadsPerBlock, 0, stream>>>(
        static_cast<KernelArgs>(args)...);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
};

void check_is_cuda(const at::Tensor& value) {
  TORCH_CHECK_TYPE(value.is_cuda(),
                   "multi_scale_deformable_attn (CUDA kernel): value must be "
                   "a CUDA tensor, got ",
                   value.device());
}

at::Tensor msda_forward_cuda(const at::Tensor& value,
                             const at::Tensor& spatial_shapes,
                             const at::Tensor& level_start_index,
                             const at::Tensor& sampling_locations,
                             const at::Tensor& attention_weights) {
  check_msda_inputs(value, spatial_shapes, level_start_index,
                    sampling_locations, attention_weights);
  check_is_cuda(value);
  const c10::cuda::CUDAGuard device_guard(value.device());
  const CudaLauncher launch{c10::cuda::getCurrentCUDAStream().stream()};
  return msda_cuda::forward(launch, value.contiguous(),
                            spatial_shapes.contiguous(),
                            level_start_index.contiguous(),
                            sampling_locations.contiguous(),
                            attention_weights.contiguous());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> msda_backward_cuda(
    const at::Tensor& grad_output, const at::Tensor& value,
    const at::Tensor& spatial_shapes, const at::Tensor& level_start_index,
    const at::Tensor& sampling_locations,
    const at::Tensor& attention_weights) {
  check_msda_inputs(value, spatial_shapes, level_start_index,
                    sampling_locations, attention_weights);
  check_is_cuda(value);
  const int64_t B = value.size(0);
  const int64_t M = value.size(2);
  const int64_t D = value.size(3);
  const int64_t Q = sampling_locations.size(1);
  TORCH_CHECK_TYPE(grad_output.scalar_type() == value.scalar_type(),
                   "multi_scale_deformable_attn_backward: grad_output dtype ",
                   grad_output.scalar_type(), " differs from value dtype ",
                   value.scalar_type());
  TORCH_CHECK_TYPE(grad_output.device() == value.device(),
                   "multi_scale_deformable_attn_backward: grad_output is on ",
                   grad_output.device(), " but value is on ", value.device());
  const bool flat_ok = grad_output.dim() == 3 && grad_output.size(0) == B &&
                       grad_output.size(1) == Q &&
                       grad_output.size(2) == M * D;
  const bool split_ok = grad_output.dim() == 4 && grad_output.size(0) == B &&
                        grad_output.size(1) == Q && grad_output.size(2) == M &&
                        grad_output.size(3) == D;
  TORCH_CHECK_VALUE(flat_ok || split_ok,
                    "multi_scale_deformable_attn_backward: grad_output must "
                    "have shape (B, num_queries, num_heads * head_dim) = (",
                    B, ", ", Q, ", ", M * D, "), got shape ",
                    grad_output.sizes());

  const c10::cuda::CUDAGuard device_guard(value.device());
  const CudaLauncher launch{c10::cuda::getCurrentCUDAStream().stream()};
  return msda_cuda::backward(
      launch, at::globalContext().deterministicAlgorithms(),
      grad_output.contiguous(), value.contiguous(),
      spatial_shapes.contiguous(), level_start_index.contiguous(),
      sampling_locations.contiguous(), attention_weights.contiguous());
}

}  // namespace

TORCH_LIBRARY_IMPL(ddetr_plugin, CUDA, m) {
  m.impl("multi_scale_deformable_attn", &msda_forward_cuda);
  m.impl("multi_scale_deformable_attn_backward", &msda_backward_cuda);
}

}  // namespace ddetr_plugin
