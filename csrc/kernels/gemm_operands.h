// Packing sources and epilogues shared by the ops: strided matrices (with the
// backward prologue: the activation derivative multiplied in while packing) and the
// bias + activation + store epilogue.
#pragma once

#include <cstdint>
#include <type_traits>

#include "activation.h"
#include "dtype.h"
#include "gemm.h"

namespace fusedlayers {

// The incoming gradient dy turned into dz = dy * act'(.) on the fly. y and z share
// dy's layout; z is read only when the activation's derivative needs it.
template <typename T>
struct ActivationGradPrologue {
  const T* y = nullptr;
  const T* z = nullptr;
  ActivationSpec act;
};

// data[off] as Acc, times the prologue's derivative at `off` when `prologue` is set;
// `use_z` (whether that derivative reads z) is hoisted out of the callers' loops.
template <typename Acc, typename T>
inline Acc load_with_prologue(const T* data, int64_t off,
                              const ActivationGradPrologue<T>* prologue, bool use_z) {
  Acc v = load_as<Acc>(data[off]);
  if (prologue) {
    const Acc y = prologue->y ? load_as<Acc>(prologue->y[off]) : Acc(0);
    const Acc z = use_z ? load_as<Acc>(prologue->z[off]) : Acc(0);
    v *= activation_derivative<Acc>(prologue->act, y, z);
  }
  return v;
}

// Element (r, d) = data[r * row_stride + d * depth_stride], times the prologue's
// derivative at the same offset when `prologue` is set. With `ones_row`, one extra
// row of ones follows the `rows` real ones: multiplying it into dz sums dz's columns,
// which is how the bias gradient comes out of the weight-gradient GEMM for free.
template <typename T, typename Acc>
PackSource<Acc> strided_source(const T* data, int64_t rows, int64_t depth, int64_t row_stride,
                               int64_t depth_stride,
                               const ActivationGradPrologue<T>* prologue = nullptr,
                               bool ones_row = false) {
  PackSource<Acc> src;
  src.rows = rows + (ones_row ? 1 : 0);
  src.depth = depth;
  if constexpr (std::is_same_v<T, Acc>) {
    if (!prologue && !ones_row) {  // plain: the engine's own vectorized packing
      src.data = data;
      src.row_stride = row_stride;
      src.depth_stride = depth_stride;
      return src;
    }
  }
  const ActivationGradPrologue<T> pro = prologue ? *prologue : ActivationGradPrologue<T>{};
  const bool has_prologue = prologue != nullptr;
  const bool use_z = has_prologue && grad_needs_preactivation(pro.act);
  src.pack = [=](int64_t r0, int64_t nr, int64_t d0, int64_t nd, int panel, Acc* dst) {
    for (int64_t pr = 0; pr < nr; pr += panel) {
      Acc* panel_dst = dst + pr * nd;
      for (int rr = 0; rr < panel; ++rr) {
        const int64_t r = r0 + pr + rr;
        Acc* out = panel_dst + rr;
        if (pr + rr >= nr) {
          for (int64_t d = 0; d < nd; ++d) out[d * panel] = Acc(0);
        } else if (ones_row && r == rows) {
          for (int64_t d = 0; d < nd; ++d) out[d * panel] = Acc(1);
        } else {
          const int64_t base = r * row_stride + d0 * depth_stride;
          const ActivationGradPrologue<T>* p = has_prologue ? &pro : nullptr;
          for (int64_t d = 0; d < nd; ++d) {
            out[d * panel] = load_with_prologue<Acc>(data, base + d * depth_stride, p, use_z);
          }
        }
      }
    }
  };
  return src;
}

// Writes act(tile + bias[col]) to out (row-major, ld_out) and, when z_out is set, the
// pre-activation too. Column j of the tile is output column col0 + j.
template <typename T, typename Acc>
inline void epilogue_bias_act(const Acc* tile, int64_t ld_tile, int64_t rows, int64_t cols,
                              const T* bias, int64_t col0, ActivationSpec act, T* out,
                              int64_t ld_out, T* z_out) {
  for (int64_t i = 0; i < rows; ++i) {
    const Acc* t = tile + i * ld_tile;
    T* o = out + i * ld_out;
    T* zo = z_out ? z_out + i * ld_out : nullptr;
    for (int64_t j = 0; j < cols; ++j) {
      Acc z = t[j];
      if (bias) z += load_as<Acc>(bias[col0 + j]);
      if (zo) zo[j] = store_as<T>(z);
      o[j] = store_as<T>(activation_forward<Acc>(act, z));
    }
  }
}

}  // namespace fusedlayers
