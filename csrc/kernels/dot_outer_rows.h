// A dense layer's backward for a batch of a few rows, in one pass over the kernel W
// (see MicroKernel::dot_outer_by_rows), written once over the vector traits V of
// gemm_microkernel.h and instantiated by each ISA translation unit (include this
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
#include <utility>

#include "gemm_kernels.h"

namespace fusedlayers {
namespace isa_generic {

// M rows of dz; U vectors of a W row per step, so that M x U independent sums hide the
// FMA latency (8 at most: with M = 8, 16 registers would not hold 16 sums and the loads).
template <class V, int M>
void dot_outer_rows(int64_t rows, int64_t n, const typename V::T* w, int64_t ldw,
                    const typename V::T* v, const typename V::T* u, int64_t ld_u,
                    typename V::T* dot, int64_t ld_dot, typename V::T* outer, int64_t ld_outer,
                    OuterWrite write) {
  using T = typename V::T;
  using Reg = typename V::Reg;
  constexpr int L = V::kLanes;
  constexpr int U = M <= 2 ? 4 : M <= 4 ? 2 : 1;
  for (int64_t r = 0; r < rows; ++r) {
    const T* w_row = w + r * ldw;
    T* out_row = outer + r * ld_outer;
    Reg scale[M];
    for (int b = 0; b < M; ++b) scale[b] = V::broadcast(u + b * ld_u + r);
    Reg sums[M][U];
    for (int b = 0; b < M; ++b)
      for (int q = 0; q < U; ++q) sums[b][q] = V::zero();
    // One vector of columns from j: the dots' sums in slot q, the outer row stored.
    auto step = [&](int64_t j, int q, auto load, auto store) {
      const Reg wv = load(w_row + j);
      Reg o = V::zero();
#pragma GCC unroll 8
      for (int b = 0; b < M; ++b) {
        const Reg vb = load(v + b * n + j);
        sums[b][q] = V::fma(wv, vb, sums[b][q]);
        o = V::fma(scale[b], vb, o);
      }
      store(out_row + j, o);
    };
    const auto load = [](const T* p) { return V::load(p); };
    // Whole vectors of the row: streamed past the caches when asked and aligned.
    const auto vectors = [&](auto store) {
      int64_t j = 0;
      for (; j + U * L <= n; j += U * L) {
#pragma GCC unroll 4
        for (int q = 0; q < U; ++q) step(j + q * L, q, load, store);
      }
      for (; j + L <= n; j += L) step(j, 0, load, store);
      return j;
    };
    const int64_t j = write == OuterWrite::kStream &&
                              reinterpret_cast<uintptr_t>(out_row) % sizeof(Reg) == 0
                          ? vectors([](T* p, Reg x) { V::stream(p, x); })
                          : vectors([](T* p, Reg x) { V::store(p, x); });
    if (j < n) {
      const int left = static_cast<int>(n - j);
      step(j, 0, [left](const T* p) { return V::load_first(p, left); },
           [left](T* p, Reg x) { V::store_first(p, x, left); });
    }
    // Each dot: its U slots added in order, then its lanes in order.
    for (int b = 0; b < M; ++b) {
      Reg total = sums[b][0];
      for (int q = 1; q < U; ++q) total = V::add(total, sums[b][q]);
      T lanes[L];
      V::store(lanes, total);
      T sum = lanes[0];
      for (int l = 1; l < L; ++l) sum += lanes[l];
      dot[b * ld_dot + r] = sum;
    }
  }
  if (write == OuterWrite::kStream) V::stream_fence();
}

// dot_outer_by_rows[m] for m = 1 .. sizeof...(MMinusOne).
template <class V, int... MMinusOne>
void set_dot_outer_rows(MicroKernel<typename V::T>& k, std::integer_sequence<int, MMinusOne...>) {
  ((k.dot_outer_by_rows[MMinusOne + 1] = &dot_outer_rows<V, MMinusOne + 1>), ...);
}

}  // namespace isa_generic
}  // namespace fusedlayers
