// The GEMM's operands as views: element (row, col) of a logical matrix read from a
// tensor in place, so conv2d and conv2d_transpose are implicit GEMMs (no im2col
// buffer). Callers keep (row, col) inside the matrix; conv views return zero where
// the window falls in the padding. kColsContiguous says which index walks memory,
// so the tile loader can give consecutive threads consecutive addresses.
#pragma once

#include <cstdint>

#include "csrc/kernels/conv_geometry.h"
#include "csrc/kernels/cuda/device_types.cuh"

namespace fusedlayers::gpu {

template <typename T>
struct RowMajorView {
  static constexpr bool kColsContiguous = true;
  const T* data;
  int64_t ld;
  __device__ T at(int64_t row, int64_t col) const { return data[row * ld + col]; }
};

template <typename View>
struct TransposedView {
  static constexpr bool kColsContiguous = !View::kColsContiguous;
  View inner;
  __device__ auto at(int64_t row, int64_t col) const { return inner.at(col, row); }
};

// The position (batch, y, x) of a flat row index over [batch, h, w].
struct Position {
  int64_t b, y, x;
};
__device__ __forceinline__ Position position_of(int64_t row, int64_t h, int64_t w) {
  const int64_t x = row % w;
  const int64_t t = row / w;
  return {t / h, t % h, x};
}

// The big tensor [batch, big h, big w, big C] as the matrix [small positions,
// (ky, kx, big C)]: row r, column (ky, kx, c) holds big[b, oy*s + ky*d - pad, ..., c].
// conv2d's input operand and conv2d_transpose's gradient-to-input operand.
template <typename T>
struct ConvGatherView {
  static constexpr bool kColsContiguous = true;
  const T* big;
  ConvGeometry g;
  __device__ T at(int64_t row, int64_t col) const {
    const Position p = position_of(row, g.h.small, g.w.small);
    const int64_t c = col % g.big_channels;
    const int64_t tap = col / g.big_channels;
    const int64_t iy = p.y * g.h.stride + (tap / g.w.kernel) * g.h.dilation - g.h.pad_before;
    const int64_t ix = p.x * g.w.stride + (tap % g.w.kernel) * g.w.dilation - g.w.pad_before;
    if (iy < 0 || iy >= g.h.big || ix < 0 || ix >= g.w.big) return zero_of<T>();
    return big[((p.b * g.h.big + iy) * g.w.big + ix) * g.big_channels + c];
  }
};

// The small tensor [batch, small h, small w, small C] as the matrix [big positions,
// (ky, kx, small C)]: row (b, iy, ix), column (ky, kx, n) holds small[b, oy, ox, n]
// where oy*s + ky*d - pad = iy, zero where no such oy exists. conv2d_transpose's input
// operand and conv2d's gradient-to-input operand.
template <typename T>
struct ConvScatterView {
  static constexpr bool kColsContiguous = true;
  const T* small;
  ConvGeometry g;
  __device__ T at(int64_t row, int64_t col) const {
    const Position p = position_of(row, g.h.big, g.w.big);
    const int64_t n = col % g.small_channels;
    const int64_t tap = col / g.small_channels;
    const int64_t ty = p.y + g.h.pad_before - (tap / g.w.kernel) * g.h.dilation;
    const int64_t tx = p.x + g.w.pad_before - (tap % g.w.kernel) * g.w.dilation;
    if (ty < 0 || tx < 0 || ty % g.h.stride != 0 || tx % g.w.stride != 0) return zero_of<T>();
    const int64_t oy = ty / g.h.stride, ox = tx / g.w.stride;
    if (oy >= g.h.small || ox >= g.w.small) return zero_of<T>();
    return small[((p.b * g.h.small + oy) * g.w.small + ox) * g.small_channels + n];
  }
};

// The kernel [kh, kw, big C, small C] as the matrix [(ky, kx, small C), big C]: the
// weight operand of the scatter (each tap's matrix transposed).
template <typename T>
struct TapTransposedKernelView {
  static constexpr bool kColsContiguous = false;
  const T* kernel;
  int64_t big_channels, small_channels;
  __device__ T at(int64_t row, int64_t col) const {
    const int64_t n = row % small_channels;
    const int64_t tap = row / small_channels;
    return kernel[(tap * big_channels + col) * small_channels + n];
  }
};

}  // namespace fusedlayers::gpu
