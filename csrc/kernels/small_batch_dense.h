// A dense layer's backward for a batch of a few rows, which reads the kernel W once, in
// place (MicroKernel::dot_outer_by_rows), and how W is stored against V's vectors (also
// for the bfloat16 strips of gemm_microkernel.h). Written once over the vector traits V
// of gemm_microkernel.h and instantiated by each ISA translation unit (include this
// header only from gemm_microkernel.h).
//
// With a batch of 1-8 both products of the backward are bound by memory, not by FMAs:
// dx = dz·Wᵀ reads all of W for a few multiply-adds an element, dW = xᵀ·dz writes as
// many elements as W has. Two GEMMs read W and write dW in separate passes (and the
// transposed product broadcasts one element of W per FMA); here each row of W is read
// once, while its dW row is written beside it: 1 x 4096 -> 4096, tf.function, two
// threads: see docs/performance.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <utility>

#include "dtype.h"
#include "gemm_kernels.h"

namespace fusedlayers {
namespace isa_generic {

// How W, x, dx and dW are stored (S) against V's vectors: as V's own type, or as
// bfloat16 for float vectors (widened on load; rounded to nearest even on store, NaN kept
// quiet, as bfloat16_from_float rounds). Written here rather than calling dtype.h's
// inline conversions: a copy of those compiled with this ISA's flags could be the one the
// linker keeps for baseline code.
template <class V, typename S>
struct Stored {  // S == V::T
  using T = typename V::T;
  using Reg = typename V::Reg;
  static Reg load(const S* p) { return V::load(p); }
  static Reg load_first(const S* p, int n) { return V::load_first(p, n); }
  static void store(S* p, Reg x) { V::store(p, x); }
  static void store_first(S* p, Reg x, int n) { V::store_first(p, x, n); }
  static constexpr bool kStreams = true;
  static void stream(S* p, Reg x) { V::stream(p, x); }
  static T scalar(S s) { return s; }
  static S from_scalar(T t) { return t; }
};

// bfloat16 bits in V's lanes, 16 and 32 bits wide (GCC vector extensions).
template <class V>
struct BitLanes {
  typedef uint16_t Half __attribute__((vector_size(2 * V::kLanes)));
  typedef uint32_t Full __attribute__((vector_size(4 * V::kLanes)));
};
template <class V>
using Bits16 = typename BitLanes<V>::Half;
template <class V>
using Bits32 = typename BitLanes<V>::Full;

template <class V>
typename V::Reg widen_bf16(Bits16<V> h) {
  const Bits32<V> wide = __builtin_convertvector(h, Bits32<V>) << 16;
  typename V::Reg x;
  std::memcpy(&x, &wide, sizeof x);
  return x;
}

template <class V>
Bits16<V> round_to_bf16(typename V::Reg x) {
  Bits32<V> u;
  std::memcpy(&u, &x, sizeof u);
  const Bits32<V> nearest = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  const Bits32<V> quiet_nan = (u >> 16) | 0x40u;
  return __builtin_convertvector((u & 0x7fffffffu) > 0x7f800000u ? quiet_nan : nearest, Bits16<V>);
}

template <class V>
struct Stored<V, bfloat16_t> {
  using Reg = typename V::Reg;
  static_assert(sizeof(Bits32<V>) == sizeof(Reg), "float vectors only");
  static Reg load(const bfloat16_t* p) {
    Bits16<V> h;
    std::memcpy(&h, p, sizeof h);
    return widen_bf16<V>(h);
  }
  static Reg load_first(const bfloat16_t* p, int n) {
    Bits16<V> h{};
    std::memcpy(&h, p, n * sizeof(bfloat16_t));
    return widen_bf16<V>(h);
  }
  static void store(bfloat16_t* p, Reg x) {
    const Bits16<V> h = round_to_bf16<V>(x);
    std::memcpy(p, &h, sizeof h);
  }
  static void store_first(bfloat16_t* p, Reg x, int n) {
    const Bits16<V> h = round_to_bf16<V>(x);
    std::memcpy(p, &h, n * sizeof(bfloat16_t));
  }
  static constexpr bool kStreams = false;  // half a vector per store: stored plainly
  static void stream(bfloat16_t* p, Reg x) { store(p, x); }
  // One element through the vector conversions (so scalars round as the rows do).
  static float scalar(bfloat16_t s) {
    Bits16<V> h{};
    h[0] = s.bits;
    float lanes[V::kLanes];
    V::store(lanes, widen_bf16<V>(h));
    return lanes[0];
  }
  static bfloat16_t from_scalar(float f) { return bfloat16_t{round_to_bf16<V>(V::broadcast(&f))[0]}; }
};

// M rows of dz; U vectors of a W row per step, so that M x U independent sums hide the
// FMA latency (8 at most: with M = 8, 16 registers would not hold 16 sums and the loads).
template <class V, typename S, int M>
void dot_outer_rows(int64_t rows, int64_t n, const S* w, int64_t ldw, const typename V::T* v,
                    const S* u, int64_t ld_u, S* dot, int64_t ld_dot, S* outer, int64_t ld_outer,
                    OuterWrite write) {
  using T = typename V::T;
  using Reg = typename V::Reg;
  using St = Stored<V, S>;
  constexpr int L = V::kLanes;
  constexpr int U = M <= 2 ? 4 : M <= 4 ? 2 : 1;
  const bool streams = St::kStreams && write == OuterWrite::kStream;
  for (int64_t r = 0; r < rows; ++r) {
    const S* w_row = w + r * ldw;
    S* out_row = outer + r * ld_outer;
    Reg scale[M];
    for (int b = 0; b < M; ++b) {
      const T x = St::scalar(u[b * ld_u + r]);
      scale[b] = V::broadcast(&x);
    }
    Reg sums[M][U];
    for (int b = 0; b < M; ++b)
      for (int q = 0; q < U; ++q) sums[b][q] = V::zero();
    // One vector of columns from j: the dots' sums in slot q, the outer row stored.
    auto step = [&](int64_t j, int q, auto load_w, auto load_v, auto store) {
      const Reg wv = load_w(w_row + j);
      Reg o = V::zero();
#pragma GCC unroll 8
      for (int b = 0; b < M; ++b) {
        const Reg vb = load_v(v + b * n + j);
        sums[b][q] = V::fma(wv, vb, sums[b][q]);
        o = V::fma(scale[b], vb, o);
      }
      store(out_row + j, o);
    };
    const auto load_w = [](const S* p) { return St::load(p); };
    const auto load_v = [](const T* p) { return V::load(p); };
    // Whole vectors of the row: streamed past the caches when asked and aligned.
    const auto vectors = [&](auto store) {
      int64_t j = 0;
      for (; j + U * L <= n; j += U * L) {
#pragma GCC unroll 4
        for (int q = 0; q < U; ++q) step(j + q * L, q, load_w, load_v, store);
      }
      for (; j + L <= n; j += L) step(j, 0, load_w, load_v, store);
      return j;
    };
    const int64_t j = streams && reinterpret_cast<uintptr_t>(out_row) % sizeof(Reg) == 0
                          ? vectors([](S* p, Reg x) { St::stream(p, x); })
                          : vectors([](S* p, Reg x) { St::store(p, x); });
    if (j < n) {
      const int left = static_cast<int>(n - j);
      step(j, 0, [left](const S* p) { return St::load_first(p, left); },
           [left](const T* p) { return V::load_first(p, left); },
           [left](S* p, Reg x) { St::store_first(p, x, left); });
    }
    // Each dot: its U slots added in order, then its lanes in order.
    for (int b = 0; b < M; ++b) {
      Reg total = sums[b][0];
      for (int q = 1; q < U; ++q) total = V::add(total, sums[b][q]);
      T lanes[L];
      V::store(lanes, total);
      T sum = lanes[0];
      for (int l = 1; l < L; ++l) sum += lanes[l];
      dot[b * ld_dot + r] = St::from_scalar(sum);
    }
  }
  if (streams) V::stream_fence();
}

// table[m] = dot_outer_rows for m = 1 .. sizeof...(MMinusOne).
template <class V, typename S, int... MMinusOne>
void set_dot_outer_rows(DotOuterRowsFn<typename V::T, S>* table,
                        std::integer_sequence<int, MMinusOne...>) {
  ((table[MMinusOne + 1] = &dot_outer_rows<V, S, MMinusOne + 1>), ...);
}

}  // namespace isa_generic
}  // namespace fusedlayers
