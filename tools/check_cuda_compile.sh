#!/usr/bin/env bash
# Compile-check every CUDA source csrc/**/*.cu with nvcc (-c, no link) against
# the torch headers of $PYTHON (default: python), with the flags
# torch.utils.cpp_extension uses for CUDA extensions. Works on machines without
# a GPU and with the CPU-only torch wheel. Exits non-zero on any compile error.
# Without nvcc it prints that the check was skipped and why, and exits 0 (a
# user needs no CUDA toolkit to build and test the CPU kernels); set
# REQUIRE_NVCC=1 to make a missing nvcc an error instead.
#
# Usage: PYTHON=.venv/bin/python bash tools/check_cuda_compile.sh
# Environment:
#   PYTHON          interpreter whose torch provides the headers (python)
#   NVCC            nvcc to use (nvcc on PATH, else $CUDA_HOME/bin/nvcc,
#                   else /usr/local/cuda/bin/nvcc)
#   CUDA_ARCHS      space-separated SM versions to compile for (90 80)
#   NVCC_EXTRA      extra nvcc flags, e.g. "--resource-usage"
#   REQUIRE_NVCC    1: exit 2 when no nvcc is found (default: skip)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python}"
CUDA_ARCHS="${CUDA_ARCHS:-90 80}"

if [[ -n "${NVCC:-}" ]]; then
  :
elif command -v nvcc >/dev/null 2>&1; then
  NVCC="$(command -v nvcc)"
elif [[ -n "${CUDA_HOME:-}" && -x "${CUDA_HOME}/bin/nvcc" ]]; then
  NVCC="${CUDA_HOME}/bin/nvcc"
elif [[ -x /usr/local/cuda/bin/nvcc ]]; then
  NVCC=/usr/local/cuda/bin/nvcc
elif [[ "${REQUIRE_NVCC:-0}" == 1 ]]; then
  echo "check_cuda_compile: nvcc not found (set NVCC or CUDA_HOME)" >&2
  exit 2
else
  echo "check_cuda_compile: SKIPPED: no nvcc on PATH, in \$CUDA_HOME/bin or" \
    "/usr/local/cuda/bin, so the CUDA sources were not compile-checked" \
    "(the CPU build and tests do not need it; set NVCC or CUDA_HOME to" \
    "check them, REQUIRE_NVCC=1 to make this an error)"
  exit 0
fi

# Include dirs (one per line, torch's first, then Python's) and the C++ ABI.
TORCH_INFO="$("$PYTHON" - <<'EOF'
import sysconfig

import torch
import torch.utils.cpp_extension as ext

for path in ext.include_paths():
    print(path)
print(sysconfig.get_paths()['include'])
print('ABI=%d' % int(torch._C._GLIBCXX_USE_CXX11_ABI))
EOF
)" || { echo "check_cuda_compile: cannot import torch with $PYTHON" >&2; exit 2; }

INCLUDES=()
CXX11_ABI=""
while IFS= read -r line; do
  case "$line" in
    ABI=*) CXX11_ABI="${line#ABI=}" ;;
    "") ;;
    *) INCLUDES+=("-isystem" "$line") ;;
  esac
done <<<"$TORCH_INFO"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/check_cuda_compile.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT

# The CPU torch wheel lacks this CMake-generated header that c10/cuda needs.
mkdir -p "$TMP/include/c10/cuda/impl"
echo '#define C10_CUDA_BUILD_SHARED_LIBS' \
  >"$TMP/include/c10/cuda/impl/cuda_cmake_macros.h"

GENCODE=()
for arch in $CUDA_ARCHS; do
  GENCODE+=("-gencode" "arch=compute_${arch},code=sm_${arch}")
done

NVCC_FLAGS=(
  -c -std=c++17 -O3
  -D__CUDA_NO_HALF_OPERATORS__
  -D__CUDA_NO_HALF_CONVERSIONS__
  -D__CUDA_NO_BFLOAT16_CONVERSIONS__
  -D__CUDA_NO_HALF2_OPERATORS__
  --expt-relaxed-constexpr
  --compiler-options -fPIC
  -DTORCH_API_INCLUDE_EXTENSION_H
  -DTORCH_EXTENSION_NAME=_C
  "-D_GLIBCXX_USE_CXX11_ABI=${CXX11_ABI}"
  -I "$ROOT/csrc"
  -isystem "$TMP/include"
  "${INCLUDES[@]}"
  "${GENCODE[@]}"
)
# shellcheck disable=SC2206
[[ -n "${NVCC_EXTRA:-}" ]] && NVCC_FLAGS+=(${NVCC_EXTRA})

mapfile -t SOURCES < <(find "$ROOT/csrc" -name '*.cu' -type f | sort)
if [[ ${#SOURCES[@]} -eq 0 ]]; then
  echo "check_cuda_compile: no .cu files under csrc/" >&2
  exit 1
fi

echo "check_cuda_compile: $("$NVCC" --version | tail -n 1)"
echo "check_cuda_compile: archs: $CUDA_ARCHS; torch headers from $PYTHON"
failed=0
for src in "${SOURCES[@]}"; do
  rel="${src#"$ROOT"/}"
  obj="$TMP/$(echo "$rel" | tr '/' '_').o"
  echo "check_cuda_compile: $NVCC ${NVCC_FLAGS[*]} $rel -o $obj"
  start=$SECONDS
  if "$NVCC" "${NVCC_FLAGS[@]}" "$src" -o "$obj"; then
    echo "check_cuda_compile: OK   $rel ($((SECONDS - start)) s)"
  else
    echo "check_cuda_compile: FAIL $rel" >&2
    failed=1
  fi
done

if [[ $failed -ne 0 ]]; then
  echo "check_cuda_compile: compile errors (see above)" >&2
  exit 1
fi
echo "check_cuda_compile: all ${#SOURCES[@]} CUDA source(s) compiled"
