// The bilinear footprint of one MSDA sampling point, as the CUDA kernels
// compute it, one sample per thread (host and device code). The CPU kernel
// computes the same footprint for all samples of a query at once, vectorised
// (ItemCorners in cpu/msda_kernel.cpp); both are tested against mmcv's
// reference. The sampling semantics are described in msda.h.
#pragma once

#include <cmath>
#include <cstdint>

#ifdef __CUDACC__
#define MSDA_HOST_DEVICE __host__ __device__
#else
#define MSDA_HOST_DEVICE
#endif

namespace ddetr_plugin {

// floor of float or double: CUDA's ::floor overloads on the device,
// std::floor on the host. Exact either way.
template <typename acc_t>
MSDA_HOST_DEVICE inline acc_t floor_acc(acc_t x) {
#ifdef __CUDA_ARCH__
  return ::floor(x);
#else
  return std::floor(x);
#endif
}

// The 4 bilinear corners of one sampling point on one level, in the order
// (h_low, w_low), (h_low, w_low + 1), (h_low + 1, w_low),
// (h_low + 1, w_low + 1), where (h_low, w_low) is the pixel at or above and
// left of the point.
template <typename acc_t>
struct BilinearCorners {
  int64_t row[4];  // value row (token index in S) of each corner
  bool inside[4];  // the corner lies inside the map and 0 <= row < S
  acc_t weight[4];  // bilinear weight of each corner, 0 where !inside
  acc_t lh, lw;     // fractional parts of the pixel coordinates (h, w)
  acc_t hh, hw;     // 1 - lh, 1 - lw

  // Fills the corners of the normalised location (x, y) on a level of
  // `height` x `width` pixels whose first token is `level_start`, in a value
  // of `num_rows` tokens. Returns false, leaving the struct unset, when the
  // point samples nothing (it lies outside the map, or is NaN).
  MSDA_HOST_DEVICE inline bool init(acc_t x, acc_t y, int64_t height,
                                    int64_t width, int64_t level_start,
                                    int64_t num_rows) {
    const acc_t h_im = y * static_cast<acc_t>(height) - acc_t(0.5);
    const acc_t w_im = x * static_cast<acc_t>(width) - acc_t(0.5);
    if (!(h_im > acc_t(-1) && w_im > acc_t(-1) &&
          h_im < static_cast<acc_t>(height) &&
          w_im < static_cast<acc_t>(width))) {
      return false;
    }
    const acc_t h_floor = floor_acc(h_im);
    const acc_t w_floor = floor_acc(w_im);
    const int64_t h_low = static_cast<int64_t>(h_floor);
    const int64_t w_low = static_cast<int64_t>(w_floor);
    lh = h_im - h_floor;
    lw = w_im - w_floor;
    hh = acc_t(1) - lh;
    hw = acc_t(1) - lw;
    const int64_t hs[4] = {h_low, h_low, h_low + 1, h_low + 1};
    const int64_t ws[4] = {w_low, w_low + 1, w_low, w_low + 1};
    const acc_t weights[4] = {hh * hw, hh * lw, lh * hw, lh * lw};
#ifdef __CUDACC__
#pragma unroll
#endif
    for (int k = 0; k < 4; ++k) {
      row[k] = level_start + hs[k] * width + ws[k];
      inside[k] = hs[k] >= 0 && hs[k] < height && ws[k] >= 0 &&
                  ws[k] < width && row[k] >= 0 && row[k] < num_rows;
      weight[k] = inside[k] ? weights[k] : acc_t(0);
    }
    return true;
  }
};

}  // namespace ddetr_plugin
