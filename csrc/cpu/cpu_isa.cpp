// Which instruction-set variant the CPU kernels use (cpu_isa.h), as ops:
//
//   ddetr_plugin::cpu_kernel_variant() -> str
//       cpu_isa(): the variant every CPU kernel (MSDA forward and backward,
//       counter dropout) dispatches to in this process;
//   ddetr_plugin::last_cpu_kernel_variant(bool reset=False) -> str
//       the variant a CPU kernel last ran with, as noted by the variant
//       itself ("" when none ran, since the start or the last reset);
//       reset: forget it once read, so the next call reports only kernels
//       run in between.
//
// Names are those of ATEN_CPU_CAPABILITY: "avx512", "avx2", "default".
// Python: ddetr_plugin/ops/cpu_variant.py.
#include <torch/library.h>

#include <string>

#include "cpu_isa.h"

namespace ddetr_plugin {
namespace {

std::string cpu_kernel_variant() { return cpu_isa_name(cpu_isa()); }

std::string last_cpu_kernel_variant(bool reset) {
  auto& variant = last_cpu_variant();
  const int last = reset ? variant.exchange(-1, std::memory_order_relaxed)
                         : variant.load(std::memory_order_relaxed);
  return last < 0 ? std::string() : cpu_isa_name(static_cast<CpuIsa>(last));
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(ddetr_plugin, m) {
  m.def("cpu_kernel_variant() -> str", &cpu_kernel_variant);
  m.def("last_cpu_kernel_variant(bool reset=False) -> str",
        &last_cpu_kernel_variant);
}

}  // namespace ddetr_plugin
