// Schema and input checks of ddetr_plugin::counter_dropout, dropout whose
// mask is a hash of (seed, element index) instead of draws of a random
// number generator:
//
//   counter_dropout(input, p, seed)[i] =
//       keep(seed, i) ? input[i] / (1 - p) : input[i] * 0,
//   keep(seed, i) = hash(seed, i) >= round(p * 2^32),
//
// for the flat (row-major) index i of every element of `input`; hash is
// two rounds of MurmurHash3's 32-bit finaliser over the index, keyed by the
// seed (csrc/cpu/counter_dropout_kernel.cpp). An element is kept with
// probability 1 - p (to within 2^-32), as with torch's dropout, and its
// gradient is the same function of grad_output with the same seed: the mask
// is recomputed, never stored.
//
// p is in [0, 1]. Where round(p * 2^32) reaches 2^32 (p == 1, and every p
// within 2^-33 of 1) no element is kept: the output is input * 0 (zeros for
// finite input; NaN where input is inf or NaN), as torch's CPU dropout at
// p == 1, and never a kept element scaled by 1 / (1 - p) ~ 1e10.
//
// relu_counter_dropout(input, p, seed) is counter_dropout(relu(input), p,
// seed), bit for bit, in one pass: the FFN's activation and dropout without
// the intermediate tensor. Its gradient needs only the output:
//
//   relu_counter_dropout_backward(grad_output, output, p)[i] =
//       output[i] > 0 ? grad_output[i] / (1 - p) : 0,
//
// since an output element is > 0 exactly where it was kept and its input
// was > 0 (0 everywhere when no element is kept).
// Python: ddetr_plugin/ops/counter_dropout.py.
#include <ATen/core/Tensor.h>
#include <torch/library.h>

namespace ddetr_plugin {

TORCH_LIBRARY_FRAGMENT(ddetr_plugin, m) {
  m.def("counter_dropout(Tensor input, float p, int seed) -> Tensor");
  m.def("relu_counter_dropout(Tensor input, float p, int seed) -> Tensor");
  m.def(
      "relu_counter_dropout_backward(Tensor grad_output, Tensor output, "
      "float p) -> Tensor");
}

}  // namespace ddetr_plugin
