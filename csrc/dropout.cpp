// Schema and input checks of ddetr_plugin::counter_dropout, dropout whose
// mask is a hash of (seed, element index) instead of draws of a random
// number generator:
//
//   counter_dropout(input, p, seed)[i] =
//       keep(seed, i) ? input[i] / (1 - p) : 0,
//   keep(seed, i) = hash(seed, i) >= p * 2^32,
//
// for the flat (row-major) index i of every element of `input`; hash is
// two rounds of MurmurHash3's 32-bit finaliser over the index, keyed by the
// seed (csrc/cpu/dropout_kernel.cpp). An element is kept with probability
// 1 - p (to within 2^-32), as with torch's dropout, and its gradient is the
// same function of grad_output with the same seed: the mask is recomputed,
// never stored. Python: ddetr_plugin/ops/dropout.py.
#include <ATen/core/Tensor.h>
#include <torch/library.h>

namespace ddetr_plugin {

TORCH_LIBRARY_FRAGMENT(ddetr_plugin, m) {
  m.def("counter_dropout(Tensor input, float p, int seed) -> Tensor");
}

}  // namespace ddetr_plugin
