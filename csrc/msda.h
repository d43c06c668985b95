// Multi-scale deformable attention (MSDA), Zhu et al., "Deformable DETR",
// ICLR 2021, arXiv 2010.04159, Eq. (2). This comment is the one description
// of the operators' shapes and semantics; the other files refer to it.
//
// Operators of the ddetr_plugin library (schemas and input checks in
// msda.cpp, kernels in cpu/msda_kernel.cpp and cuda/msda_kernel.cu, fake
// kernels and autograd in ddetr_plugin/ops/msda.py):
//   multi_scale_deformable_attn(value, spatial_shapes, level_start_index,
//       sampling_locations, attention_weights) -> output
//   _multi_scale_deformable_attn_backward(grad_output, value, spatial_shapes,
//       level_start_index, sampling_locations, attention_weights)
//       -> (grad_value, grad_sampling_locations, grad_attention_weights)
//       private: called by the autograd formula only.
//
//   out[b, q, m, :] = sum_l sum_p A[b, q, m, l, p] * V_l[b, :, m, :](loc[b, q, m, l, p])
//
// Shapes (B batch, S = sum_l H_l * W_l value tokens, M heads, D head_dim,
// Q queries, L levels, P points):
//   value               (B, S, M, D)         float64/float32/float16/bfloat16,
//                                            level by level, row-major
//   spatial_shapes      (L, 2)  int64        (H_l, W_l) per level
//   level_start_index   (L,)    int64        first token of level l in S (the
//                                            exclusive cumsum of H_l * W_l)
//   sampling_locations  (B, Q, M, L, P, 2)   value dtype, normalised (x, y):
//                                            0..1 spans the map
//   attention_weights   (B, Q, M, L, P)      value dtype
//   output              (B, Q, M * D)        value dtype
//   grad_output         (B, Q, M * D) or (B, Q, M, D), value dtype
//   The backward returns the gradients of value, sampling_locations and
//   attention_weights with their shapes and dtypes. All tensors live on one
//   device. Kernels accumulate in at::opmath_type<scalar_t> (float32 for
//   float16/bfloat16) and index with int64.
//
// Sampling: V_l(.) samples level l bilinearly exactly like mmcv's
// multi_scale_deformable_attn_pytorch, i.e. F.grid_sample(mode='bilinear',
// padding_mode='zeros', align_corners=False): (x, y) lands on the pixel
// coordinates h_im = y * H_l - 0.5, w_im = x * W_l - 0.5; a point samples
// nothing unless -1 < h_im < H_l and -1 < w_im < W_l (a NaN point samples
// nothing), and each of its 4 neighbouring pixels contributes only when it
// lies inside the map and inside [0, S) of value. msda_bilinear.h computes
// the corners and weights for the CUDA kernels, ItemCorners in
// cpu/msda_kernel.cpp for the CPU kernels.
#pragma once

#include <ATen/core/Tensor.h>

namespace ddetr_plugin {

// The sizes of one call (B, S, M, D of value; Q, L, P of
// sampling_locations), for inputs that passed check_msda_inputs.
struct MsdaSizes {
  int64_t batch, num_value, num_heads, head_dim, num_queries, num_levels,
      num_points;
};

inline MsdaSizes msda_sizes(const at::Tensor& value,
                            const at::Tensor& sampling_locations) {
  return {value.size(0),
          value.size(1),
          value.size(2),
          value.size(3),
          sampling_locations.size(1),
          sampling_locations.size(3),
          sampling_locations.size(4)};
}

// Checks the inputs of both operators before any kernel touches memory.
// Raises c10::TypeError (Python TypeError) for dtype/device problems and
// c10::ValueError (Python ValueError) for shape problems, naming the argument,
// the expected and the actual shape. Values of spatial_shapes and
// level_start_index (positive sizes, starts consistent with the sizes,
// sum(H * W) == S) are checked only when they live on the CPU.
void check_msda_inputs(const at::Tensor& value, const at::Tensor& spatial_shapes,
                       const at::Tensor& level_start_index,
                       const at::Tensor& sampling_locations,
                       const at::Tensor& attention_weights);

// check_msda_inputs, and grad_output's dtype, device and shape against
// value's.
void check_msda_backward_inputs(const at::Tensor& grad_output,
                                const at::Tensor& value,
                                const at::Tensor& spatial_shapes,
                                const at::Tensor& level_start_index,
                                const at::Tensor& sampling_locations,
                                const at::Tensor& attention_weights);

}  // namespace ddetr_plugin
