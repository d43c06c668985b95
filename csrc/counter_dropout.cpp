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
// Python: ddetr_plugin/ops/counter_dropout.py.
#include <ATen/core/Tensor.h>
#include <torch/library.h>

namespace ddetr_plugin {

TORCH_LIBRARY_FRAGMENT(ddetr_plugin, m) {
  m.def("counter_dropout(Tensor input, float p, int seed) -> Tensor");
}

}  // namespace ddetr_plugin
