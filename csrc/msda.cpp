// Operator schemas of the ddetr_plugin library, the input checks every kernel
// runs, and the Python module entry point of ddetr_plugin._C. Shapes and
// semantics: msda.h. Each kernel file (cpu/msda_kernel.cpp,
// cuda/msda_kernel.cu) registers its kernels for its dispatch key; autograd
// and fake (meta) kernels are registered from Python
// (ddetr_plugin/ops/msda.py).
#include <Python.h>

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <sstream>

#include "msda.h"

namespace ddetr_plugin {

namespace {

std::string shape_str(const at::Tensor& t) {
  std::ostringstream os;
  os << t.sizes();
  return os.str();
}

void check_rank(const at::Tensor& t, const char* name, int64_t rank,
                const char* layout) {
  TORCH_CHECK_VALUE(t.dim() == rank, "multi_scale_deformable_attn: ", name,
                    " must have shape ", layout, " (", rank,
                    " dims), got shape ", shape_str(t));
}

void check_size(const at::Tensor& t, const char* name, int64_t dim,
                int64_t expected, const char* what, const char* layout) {
  TORCH_CHECK_VALUE(t.size(dim) == expected, "multi_scale_deformable_attn: ",
                    name, " must have shape ", layout, " with dim ", dim, " (",
                    what, ") = ", expected, ", got shape ", shape_str(t));
}

}  // namespace

void check_msda_inputs(const at::Tensor& value, const at::Tensor& spatial_shapes,
                       const at::Tensor& level_start_index,
                       const at::Tensor& sampling_locations,
                       const at::Tensor& attention_weights) {
  constexpr const char* kValue = "(B, S, num_heads, head_dim)";
  constexpr const char* kShapes = "(num_levels, 2)";
  constexpr const char* kStart = "(num_levels,)";
  constexpr const char* kLoc =
      "(B, num_queries, num_heads, num_levels, num_points, 2)";
  constexpr const char* kAttn =
      "(B, num_queries, num_heads, num_levels, num_points)";

  TORCH_CHECK_TYPE(at::isFloatingType(value.scalar_type()),
                   "multi_scale_deformable_attn: value must be floating point, "
                   "got ", value.scalar_type());
  TORCH_CHECK_TYPE(sampling_locations.scalar_type() == value.scalar_type(),
                   "multi_scale_deformable_attn: sampling_locations dtype ",
                   sampling_locations.scalar_type(),
                   " differs from value dtype ", value.scalar_type());
  TORCH_CHECK_TYPE(attention_weights.scalar_type() == value.scalar_type(),
                   "multi_scale_deformable_attn: attention_weights dtype ",
                   attention_weights.scalar_type(),
                   " differs from value dtype ", value.scalar_type());
  TORCH_CHECK_TYPE(spatial_shapes.scalar_type() == at::kLong,
                   "multi_scale_deformable_attn: spatial_shapes must be int64, "
                   "got ", spatial_shapes.scalar_type());
  TORCH_CHECK_TYPE(level_start_index.scalar_type() == at::kLong,
                   "multi_scale_deformable_attn: level_start_index must be "
                   "int64, got ", level_start_index.scalar_type());
  const std::pair<const at::Tensor*, const char*> others[] = {
      {&spatial_shapes, "spatial_shapes"},
      {&level_start_index, "level_start_index"},
      {&sampling_locations, "sampling_locations"},
      {&attention_weights, "attention_weights"}};
  for (const auto& [t, name] : others) {
    TORCH_CHECK_TYPE(t->device() == value.device(),
                     "multi_scale_deformable_attn: ", name, " is on ",
                     t->device(), " but value is on ", value.device());
  }

  check_rank(value, "value", 4, kValue);
  check_rank(spatial_shapes, "spatial_shapes", 2, kShapes);
  check_rank(level_start_index, "level_start_index", 1, kStart);
  check_rank(sampling_locations, "sampling_locations", 6, kLoc);
  check_rank(attention_weights, "attention_weights", 5, kAttn);

  const int64_t batch = value.size(0);
  const int64_t num_heads = value.size(2);
  const int64_t num_levels = spatial_shapes.size(0);
  check_size(spatial_shapes, "spatial_shapes", 1, 2, "(H, W)", kShapes);
  check_size(level_start_index, "level_start_index", 0, num_levels,
             "num_levels", kStart);
  check_size(sampling_locations, "sampling_locations", 0, batch, "B", kLoc);
  check_size(sampling_locations, "sampling_locations", 2, num_heads,
             "num_heads", kLoc);
  check_size(sampling_locations, "sampling_locations", 3, num_levels,
             "num_levels", kLoc);
  check_size(sampling_locations, "sampling_locations", 5, 2, "(x, y)", kLoc);
  for (int64_t d = 0; d < 5; ++d) {
    TORCH_CHECK_VALUE(
        attention_weights.size(d) == sampling_locations.size(d),
        "multi_scale_deformable_attn: attention_weights must have shape ",
        kAttn, " matching sampling_locations ", shape_str(sampling_locations),
        ", got shape ", shape_str(attention_weights));
  }

  if (spatial_shapes.device().is_cpu()) {
    const auto shapes = spatial_shapes.contiguous();
    const auto starts = level_start_index.contiguous();
    const int64_t* hw = shapes.data_ptr<int64_t>();
    const int64_t* start = starts.data_ptr<int64_t>();
    int64_t total = 0;
    for (int64_t l = 0; l < num_levels; ++l) {
      TORCH_CHECK_VALUE(hw[2 * l] > 0 && hw[2 * l + 1] > 0,
                        "multi_scale_deformable_attn: spatial_shapes[", l,
                        "] = (", hw[2 * l], ", ", hw[2 * l + 1],
                        ") must be positive");
      TORCH_CHECK_VALUE(start[l] == total,
                        "multi_scale_deformable_attn: level_start_index[", l,
                        "] = ", start[l], " is inconsistent with "
                        "spatial_shapes, expected ", total);
      total += hw[2 * l] * hw[2 * l + 1];
    }
    TORCH_CHECK_VALUE(total == value.size(1),
                      "multi_scale_deformable_attn: sum(H * W) over "
                      "spatial_shapes = ", total, " but value has shape ",
                      shape_str(value), " with S = ", value.size(1));
  }
}

void check_msda_backward_inputs(const at::Tensor& grad_output,
                                const at::Tensor& value,
                                const at::Tensor& spatial_shapes,
                                const at::Tensor& level_start_index,
                                const at::Tensor& sampling_locations,
                                const at::Tensor& attention_weights) {
  check_msda_inputs(value, spatial_shapes, level_start_index,
                    sampling_locations, attention_weights);
  TORCH_CHECK_TYPE(grad_output.scalar_type() == value.scalar_type(),
                   "_multi_scale_deformable_attn_backward: grad_output dtype ",
                   grad_output.scalar_type(), " differs from value dtype ",
                   value.scalar_type());
  TORCH_CHECK_TYPE(grad_output.device() == value.device(),
                   "_multi_scale_deformable_attn_backward: grad_output is on ",
                   grad_output.device(), " but value is on ", value.device());
  const int64_t batch = value.size(0);
  const int64_t num_heads = value.size(2);
  const int64_t head_dim = value.size(3);
  const int64_t num_queries = sampling_locations.size(1);
  const bool flat_ok = grad_output.dim() == 3 &&
                       grad_output.size(0) == batch &&
                       grad_output.size(1) == num_queries &&
                       grad_output.size(2) == num_heads * head_dim;
  const bool split_ok = grad_output.dim() == 4 &&
                        grad_output.size(0) == batch &&
                        grad_output.size(1) == num_queries &&
                        grad_output.size(2) == num_heads &&
                        grad_output.size(3) == head_dim;
  TORCH_CHECK_VALUE(flat_ok || split_ok,
                    "_multi_scale_deformable_attn_backward: grad_output must "
                    "have shape (B, num_queries, num_heads * head_dim) = (",
                    batch, ", ", num_queries, ", ", num_heads * head_dim,
                    "), got shape ", shape_str(grad_output));
}

TORCH_LIBRARY(ddetr_plugin, m) {
  m.def(
      "multi_scale_deformable_attn(Tensor value, Tensor spatial_shapes, "
      "Tensor level_start_index, Tensor sampling_locations, "
      "Tensor attention_weights) -> Tensor");
  m.def(
      "_multi_scale_deformable_attn_backward(Tensor grad_output, Tensor value, "
      "Tensor spatial_shapes, Tensor level_start_index, "
      "Tensor sampling_locations, Tensor attention_weights) "
      "-> (Tensor, Tensor, Tensor)");
}

}  // namespace ddetr_plugin

// ddetr_plugin._C is imported only to load the operator library above.
extern "C" PyObject* PyInit__C(void) {
  static PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1,
                                   nullptr};
  return PyModule_Create(&module_def);
}
