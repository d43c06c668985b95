// Multi-scale deformable attention (MSDA), Zhu et al., "Deformable DETR",
// ICLR 2021, arXiv 2010.04159, Eq. (2).
//
// Shared declarations of the ddetr_plugin MSDA operator: the input checks that
// every kernel (CPU, CUDA) runs before touching memory.
//
// Shapes (B batch, S = sum_l H_l * W_l value tokens, M heads, D head_dim,
// Q queries, L levels, P points):
//   value               (B, S, M, D)        float
//   spatial_shapes      (L, 2)  int64       (H_l, W_l) per level
//   level_start_index   (L,)    int64       offset of level l in S
//   sampling_locations  (B, Q, M, L, P, 2)  same dtype as value, normalised
//                                           (x, y), 0..1 spans the map
//   attention_weights   (B, Q, M, L, P)     same dtype as value
//   output              (B, Q, M * D)
#pragma once

#include <ATen/core/Tensor.h>

namespace ddetr_plugin {

// Raises c10::TypeError (Python TypeError) for dtype/device problems and
// c10::ValueError (Python ValueError) for shape problems, naming the argument,
// the expected and the actual shape. Values of spatial_shapes and
// level_start_index are checked only when they live on the CPU.
void check_msda_inputs(const at::Tensor& value, const at::Tensor& spatial_shapes,
                       const at::Tensor& level_start_index,
                       const at::Tensor& sampling_locations,
                       const at::Tensor& attention_weights);

}  // namespace ddetr_plugin
