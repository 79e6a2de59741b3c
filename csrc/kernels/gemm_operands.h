// Packing sources and epilogues shared by the ops: strided matrices (with the
// backward prologue: the activation derivative multiplied in while packing) and the
// bias + activation + store epilogue. Sources are stored as T and packed as In: T's
// accumulation type (16-bit types widened while packing), or bfloat16 itself when the
// engine's bf16 kernel runs it (with_packed_type picks).
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "activation.h"
#include "dtype.h"
#include "gemm.h"

namespace fusedlayers {

// A type carried as a value, for generic lambdas.
template <typename T>
struct TypeTag {
  using type = T;
};

// Calls f(TypeTag<In>{}) with In the element type the engine packs T's operands as:
// bfloat16_t itself where T is bfloat16 and the engine runs such products on bf16
// pairs (gemm_packs_bf16(reuse): `reuse` rows of A per weight), else acc_t<T>. Callers
// pack every source of their products as In and run gemm<In>; C is summed in
// acc_t<T> either way.
template <typename T, typename F>
void with_packed_type(int64_t reuse, F&& f) {
  if constexpr (std::is_same_v<T, bfloat16_t>) {
    if (gemm_packs_bf16(reuse)) {
      f(TypeTag<bfloat16_t>{});
      return;
    }
  }
  f(TypeTag<acc_t<T>>{});
}

// v as an operand element of type In: float and double through load_as, bfloat16 kept,
// or rounded from float (for lowered matrices built from float intermediates).
template <typename In, typename From>
inline In operand_as(From v) {
  if constexpr (std::is_same_v<In, From>) {
    return v;
  } else if constexpr (std::is_same_v<In, bfloat16_t>) {
    return store_as<bfloat16_t>(load_as<float>(v));
  } else {
    return load_as<In>(v);
  }
}

// The incoming gradient dy turned into dz = dy * act'(.) on the fly. y and z share
// dy's layout; z is read only when the activation's derivative needs it.
template <typename T>
struct ActivationGradPrologue {
  const T* y = nullptr;
  const T* z = nullptr;
  ActivationSpec act;
};

// out[e * out_stride] = data[base + e * stride] for e < n, times the prologue's
// derivative at the same offset when `prologue` is set, with the activation's switch
// outside the loop (for sources the engine cannot pack itself: patches, other types).
template <typename Acc, typename T>
inline void load_run(const T* data, int64_t base, int64_t stride, int64_t n,
                     const ActivationGradPrologue<T>* prologue, Acc* out, int64_t out_stride) {
  if (!prologue) {
    for (int64_t e = 0; e < n; ++e) out[e * out_stride] = load_as<Acc>(data[base + e * stride]);
    return;
  }
  const ActivationGradPrologue<T>& pro = *prologue;
  with_activation_kind(pro.act.kind, [&](auto kind) {
    const ActivationSpec fixed{decltype(kind)::value, pro.act.slope};
    const bool use_z = grad_needs_preactivation(fixed);
    for (int64_t e = 0; e < n; ++e) {
      const int64_t off = base + e * stride;
      const Acc y = pro.y ? load_as<Acc>(pro.y[off]) : Acc(0);
      const Acc z = use_z ? load_as<Acc>(pro.z[off]) : Acc(0);
      out[e * out_stride] = load_as<Acc>(data[off]) * activation_derivative<Acc>(fixed, y, z);
    }
  });
}

// dz = dy * act'(y, z) for `count` elements from `offset`, in Acc.
template <typename T, typename Acc>
inline void activation_grad(const ActivationGradPrologue<T>& pro, const T* dy, int64_t offset,
                     int64_t count, Acc* dz, TaskRunner& runner) {
  constexpr int64_t kChunk = 1024;
  const bool use_z = grad_needs_preactivation(pro.act);
  runner.run((count + kChunk - 1) / kChunk, [&](int64_t chunk) {
    const int64_t first = offset + chunk * kChunk, n = std::min(kChunk, count - chunk * kChunk);
    Acc y[kChunk], z[kChunk];
    Acc* out = dz + chunk * kChunk;
    for (int64_t e = 0; e < n; ++e) out[e] = load_as<Acc>(dy[first + e]);
    for (int64_t e = 0; e < n; ++e) y[e] = pro.y ? load_as<Acc>(pro.y[first + e]) : Acc(0);
    if (use_z) {
      for (int64_t e = 0; e < n; ++e) z[e] = load_as<Acc>(pro.z[first + e]);
    }
    activation_derivative_multiply<Acc>(pro.act, y, use_z ? z : nullptr, out, n);
  });
}

// A grow-once per-thread buffer for the packing callbacks (y and z packed beside dz,
// 16-bit types widened), one per slot: no allocation once a thread has seen its
// largest panel. Slots: 0-2 and kBf16SourceSlot here, 3-8 in conv_lowered.cc (7 in
// conv_groups.h),
// 10-12 in dense.cc, 13-18 in conv_winograd.cc.
template <typename Acc, int kSlot>
Acc* packing_scratch(int64_t count) {
  thread_local std::vector<Acc> buffer;
  if (static_cast<int64_t>(buffer.size()) < count) buffer.resize(count);
  return buffer.data();
}

// pack_strided_panels for any storage type: other types are first widened to Acc
// into per-thread scratch (one vectorizable pass along the source's contiguous
// dimension), then packed by the engine's loops.
template <typename T, typename Acc>
void pack_widened(const T* data, int64_t row_stride, int64_t depth_stride, int64_t r0,
                  int64_t nr, int64_t d0, int64_t nd, int panel, Acc* dst) {
  if constexpr (std::is_same_v<T, Acc>) {
    pack_strided_panels<Acc>(data, row_stride, depth_stride, r0, nr, d0, nd, panel, dst);
  } else {
    Acc* wide = packing_scratch<Acc, 2>(nr * nd);
    const T* origin = data + r0 * row_stride + d0 * depth_stride;
    if (row_stride == 1) {  // rows contiguous: keep them so, wide[d * nr + r]
      for (int64_t d = 0; d < nd; ++d)
        for (int64_t r = 0; r < nr; ++r) wide[d * nr + r] = load_as<Acc>(origin[d * depth_stride + r]);
      pack_strided_panels<Acc>(wide, 1, nr, 0, nr, 0, nd, panel, dst);
    } else {  // wide[r * nd + d]
      for (int64_t r = 0; r < nr; ++r)
        for (int64_t d = 0; d < nd; ++d) wide[r * nd + d] = load_as<Acc>(origin[r * row_stride + d * depth_stride]);
      pack_strided_panels<Acc>(wide, nd, 1, 0, nr, 0, nd, panel, dst);
    }
  }
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
  // A linear layer's dz is dy itself: a plain source, which the engine may read in place.
  if (prologue && prologue->act.kind == Activation::kLinear) prologue = nullptr;
  PackSource<Acc> src;
  src.rows = rows + (ones_row ? 1 : 0);
  src.depth = depth;
  const ActivationGradPrologue<T> pro = prologue ? *prologue : ActivationGradPrologue<T>{};
  const bool has_prologue = prologue != nullptr;
  const bool use_z = has_prologue && grad_needs_preactivation(pro.act);
  if constexpr (std::is_same_v<T, Acc>) {
    if (!prologue && !ones_row) {  // plain: the engine's own vectorized packing
      src.data = data;
      src.row_stride = row_stride;
      src.depth_stride = depth_stride;
      return src;
    }
  }
  if (!has_prologue || pro.y) {
    // The engine's vectorized packing for dy (and y, z beside it), then the
    // derivative multiplied over the packed panels in one vectorizable pass.
    src.pack = [=](int64_t r0, int64_t nr, int64_t d0, int64_t nd, int panel, Acc* dst) {
      const int64_t real = std::clamp<int64_t>(rows - r0, 0, nr);
      if (real > 0) {
        pack_widened<T, Acc>(data, row_stride, depth_stride, r0, real, d0, nd, panel, dst);
        if (has_prologue) {
          const int64_t count = (real + panel - 1) / panel * panel * nd;
          Acc* y = packing_scratch<Acc, 0>(count);
          pack_widened<T, Acc>(pro.y, row_stride, depth_stride, r0, real, d0, nd, panel, y);
          Acc* z = nullptr;
          if (use_z) {
            z = packing_scratch<Acc, 1>(count);
            pack_widened<T, Acc>(pro.z, row_stride, depth_stride, r0, real, d0, nd, panel, z);
          }
          activation_derivative_multiply<Acc>(pro.act, y, z, dst, count);
        }
      }
      if (real < nr) {  // the ones row (index `real` here), possibly opening a panel
        Acc* panel_dst = dst + real / panel * panel * nd;
        if (real % panel == 0) std::fill(panel_dst, panel_dst + panel * nd, Acc(0));
        for (int64_t d = 0; d < nd; ++d) panel_dst[d * panel + real % panel] = Acc(1);
      }
    };
    return src;
  }
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
          load_run(data, r * row_stride + d0 * depth_stride, depth_stride, nd,
                   has_prologue ? &pro : nullptr, out, panel);
        }
      }
    }
  };
  return src;
}

// The per-thread scratch slot of the float panels a bf16 source is computed in.
inline constexpr int kBf16SourceSlot = 9;

// dz[e] = dz[e] * act'(y[e], z[e]) for e < count, all bf16 (z read only when the
// derivative needs it): in float, a chunk at a time, rounded back to bf16.
inline void multiply_activation_grad_bf16(ActivationSpec act, const bfloat16_t* y,
                                          const bfloat16_t* z, bfloat16_t* dz, int64_t count) {
  constexpr int64_t kChunk = 512;
  float fy[kChunk], fz[kChunk], fdz[kChunk];
  for (int64_t e0 = 0; e0 < count; e0 += kChunk) {
    const int64_t n = std::min(kChunk, count - e0);
    for (int64_t e = 0; e < n; ++e) fdz[e] = to_float(dz[e0 + e]);
    for (int64_t e = 0; e < n; ++e) fy[e] = to_float(y[e0 + e]);
    if (z) {
      for (int64_t e = 0; e < n; ++e) fz[e] = to_float(z[e0 + e]);
    }
    activation_derivative_multiply<float>(act, fy, z ? fz : nullptr, fdz, n);
    round_floats_to_bf16(fdz, n, dz + e0);
  }
}

// strided_source packed as bf16 pairs: a plain source is packed by the engine. With a
// prologue, dy, y and z are packed alike and act' x dy is taken over the panels element
// by element (their zero padding stays zero, act' being finite at 0), rounded to bf16 as
// stock TensorFlow rounds dz; the ones row is written in the pair layout. A prologue
// without y (none of the activations today) takes the float route: computed as above
// in float, then rounded.
template <>
inline PackSource<bfloat16_t> strided_source<bfloat16_t, bfloat16_t>(
    const bfloat16_t* data, int64_t rows, int64_t depth, int64_t row_stride, int64_t depth_stride,
    const ActivationGradPrologue<bfloat16_t>* prologue, bool ones_row) {
  if (prologue && prologue->act.kind == Activation::kLinear) prologue = nullptr;  // dz = dy
  PackSource<bfloat16_t> src;
  src.rows = rows + (ones_row ? 1 : 0);
  src.depth = depth;
  if (!prologue && !ones_row) {
    src.data = data;
    src.row_stride = row_stride;
    src.depth_stride = depth_stride;
    return src;
  }
  if (prologue && !prologue->y) {
    const PackSource<float> wide = strided_source<bfloat16_t, float>(
        data, rows, depth, row_stride, depth_stride, prologue, ones_row);
    src.pack = [wide](int64_t r0, int64_t nr, int64_t d0, int64_t nd, int panel, bfloat16_t* dst) {
      const int64_t padded = (nr + panel - 1) / panel * panel;
      float* panels = packing_scratch<float, kBf16SourceSlot>(padded * nd);
      wide.pack(r0, nr, d0, nd, panel, panels);
      pack_float_panels_as_bf16(panels, padded, nd, panel, dst);
    };
    return src;
  }
  const ActivationGradPrologue<bfloat16_t> pro =
      prologue ? *prologue : ActivationGradPrologue<bfloat16_t>{};
  const bool has_prologue = prologue != nullptr;
  const bool use_z = has_prologue && grad_needs_preactivation(pro.act);
  src.pack = [=](int64_t r0, int64_t nr, int64_t d0, int64_t nd, int panel, bfloat16_t* dst) {
    const int64_t ndp = (nd + 1) / 2 * 2;
    const int64_t real = std::clamp<int64_t>(rows - r0, 0, nr);
    if (real > 0) {
      pack_strided_panels<bfloat16_t>(data, row_stride, depth_stride, r0, real, d0, nd, panel, dst);
      if (has_prologue) {
        const int64_t count = (real + panel - 1) / panel * panel * ndp;
        bfloat16_t* y = packing_scratch<bfloat16_t, 0>(count);
        pack_strided_panels<bfloat16_t>(pro.y, row_stride, depth_stride, r0, real, d0, nd, panel, y);
        bfloat16_t* z = nullptr;
        if (use_z) {
          z = packing_scratch<bfloat16_t, 1>(count);
          pack_strided_panels<bfloat16_t>(pro.z, row_stride, depth_stride, r0, real, d0, nd, panel, z);
        }
        multiply_activation_grad_bf16(pro.act, y, z, dst, count);
      }
    }
    if (real < nr) {  // the ones row (index `real` here), possibly opening a panel
      bfloat16_t* panel_dst = dst + real / panel * panel * ndp;
      if (real % panel == 0) std::fill(panel_dst, panel_dst + panel * ndp, bfloat16_t{});
      bfloat16_t* row = panel_dst + (real % panel) * 2;
      for (int64_t d = 0; d < nd; ++d) row[(d / 2) * panel * 2 + d % 2] = bfloat16_t{0x3F80};
    }
  };
  return src;
}

// Where a GEMM may sum in place: the output itself when it is stored in the
// accumulation type, else the engine's scratch.
template <typename T, typename Acc = acc_t<T>>
GemmAccumulator<Acc> output_accumulator(T* out, int64_t ld) {
  if constexpr (std::is_same_v<T, Acc>) {
    return {out, ld};
  } else {
    return {};
  }
}

// dst[i * ld_dst + j] = src[i * ld_src + j] stored as T, for i < rows, j < cols (bf16 by
// the vectorized rounding, in one call); store_run is one row of it.
template <typename T, typename Acc>
inline void store_rows(const Acc* src, int64_t ld_src, int64_t rows, int64_t cols, T* dst,
                       int64_t ld_dst) {
  if constexpr (std::is_same_v<T, bfloat16_t> && std::is_same_v<Acc, float>) {
    round_float_rows_to_bf16(src, ld_src, rows, cols, dst, ld_dst);
  } else {
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < cols; ++j) dst[i * ld_dst + j] = store_as<T>(src[i * ld_src + j]);
  }
}

template <typename T, typename Acc>
inline void store_run(const Acc* src, int64_t n, T* dst) {
  store_rows(src, n, 1, n, dst, n);
}

// The epilogue storing a plain product into out (ld_out), none when the GEMM sums
// there in place already.
template <typename T, typename Acc>
TileEpilogue<Acc> store_into(T* out, int64_t ld_out) {
  if (output_accumulator<T, Acc>(out, ld_out).c) return {};
  return [out, ld_out](int64_t i0, int64_t mi, int64_t j0, int64_t nj, const Acc* tile,
                       int64_t ld) {
    store_rows(tile, ld, mi, nj, out + i0 * ld_out + j0, ld_out);
  };
}

// Writes act(tile + bias[col]) to out (row-major, ld_out) and, when z_out is set, the
// pre-activation too. Column j of the tile is output column col0 + j. `out` may be
// `tile` itself (the engine summing in the output). float goes to the dispatched ISA's
// loop (one call per tile: for short depths the epilogue costs as much as the GEMM);
// other types run in chunks of a few dozen columns with the activation's switch hoisted.
template <typename T, typename Acc>
inline void epilogue_bias_act(const Acc* tile, int64_t ld_tile, int64_t rows, int64_t cols,
                              const T* bias, int64_t col0, ActivationSpec act, T* out,
                              int64_t ld_out, T* z_out) {
  if constexpr (std::is_same_v<T, float> && std::is_same_v<Acc, float>) {
    activation_bias_forward_rows_f32(act, tile, ld_tile, rows, cols, bias ? bias + col0 : nullptr,
                                     out, ld_out, z_out);
    return;
  }
  constexpr int64_t kChunk = 64;
  if constexpr (std::is_same_v<T, bfloat16_t> && std::is_same_v<Acc, float>) {
    // A micro-tile at once: one activation call over all of it, and rows rounded to
    // bf16 by the vectorized rounding (a call and a scalar rounding per element of
    // each row cost more than the tile's share of the product).
    constexpr int64_t kTileElements = 1024;
    if (rows * cols <= kTileElements) {
      float z[kTileElements];
      for (int64_t i = 0; i < rows; ++i) {
        const float* t = tile + i * ld_tile;
        float* zi = z + i * cols;
        if (bias) {
          for (int64_t j = 0; j < cols; ++j) zi[j] = t[j] + load_as<float>(bias[col0 + j]);
        } else {
          for (int64_t j = 0; j < cols; ++j) zi[j] = t[j];
        }
      }
      if (z_out) round_float_rows_to_bf16(z, cols, rows, cols, z_out, ld_out);
      activation_forward_inplace<float>(act, z, rows * cols);
      round_float_rows_to_bf16(z, cols, rows, cols, out, ld_out);
      return;
    }
  }
  Acc z[kChunk];
  for (int64_t i = 0; i < rows; ++i) {
    const Acc* t = tile + i * ld_tile;
    T* o = out + i * ld_out;
    T* zo = z_out ? z_out + i * ld_out : nullptr;
    for (int64_t j0 = 0; j0 < cols; j0 += kChunk) {
      const int64_t n = std::min(kChunk, cols - j0);
      if (bias) {
        for (int64_t j = 0; j < n; ++j) z[j] = t[j0 + j] + load_as<Acc>(bias[col0 + j0 + j]);
      } else {
        for (int64_t j = 0; j < n; ++j) z[j] = t[j0 + j];
      }
      if (zo) {
        for (int64_t j = 0; j < n; ++j) zo[j0 + j] = store_as<T>(z[j]);
      }
      activation_forward_inplace<Acc>(act, z, n);
      for (int64_t j = 0; j < n; ++j) o[j0 + j] = store_as<T>(z[j]);
    }
  }
}

}  // namespace fusedlayers
