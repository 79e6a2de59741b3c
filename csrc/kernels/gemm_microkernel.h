// The register-tile micro-kernel, packing loops and FMA peak loop written once over a
// vector-traits class V, and instantiated by each ISA translation unit with its own
// registers (include this header only from gemm_<isa>.cc, which are compiled with
// that ISA's flags). V provides: T (the accumulators' type), Reg, kLanes, zero(),
// load(p), broadcast(p), fma(a, b, c) = a * b + c, add(a, b), store(p, v),
// load_first(p, n) and store_first(p, v, n) touching only the first n lanes, stream(p, v)
// (a non-temporal store, p aligned to the vector) and stream_fence(); and, where
// the operands are of another type, Operands (see OperandsOf).
#pragma once

#include <cstdint>
#include <type_traits>
#include <utility>

#include "small_batch_dense.h"
#include "gemm_kernels.h"

namespace fusedlayers {
namespace isa_generic {

// How many depth steps ahead the micro-kernel prefetches A's panel.
inline constexpr int kPrefetchSteps = 16;

// How many depth groups micro_tile's loop runs per iteration: V::kDepthUnroll where V
// sets it, else 1. AVX2's tiles (12 FMAs a step, 6 cycles on Zen 3's two FMA pipes)
// unroll by 4: Zen 3, `_native.gemm`, separate processes alternating, five runs each,
// 1024 x 4096 x 2048 on two threads: median 137 -> 157 GFLOP/s (runs spread 92-168 and
// 142-181); one thread 1024 x 2048 x 2048 83 -> 86. (On the Xeon, unrolling the AVX-512
// loop gained nothing measurable: docs/performance.md.)
template <class V>
constexpr auto depth_unroll(int) -> decltype(V::kDepthUnroll, int()) {
  return V::kDepthUnroll;
}
template <class V>
constexpr int depth_unroll(...) {
  return 1;
}

// The operand side of V, for micro_tile: by default the operands are vectors of the
// accumulators' own type, one depth step at a time. A V whose operands differ (bf16
// pairs summed into float) provides a nested `Operands` with Elem, Reg, kDepthGroup,
// load(p), broadcast(p) (one depth group of one row, to every lane), broadcast_first(p)
// (a partial last group: its first element, the rest zero, reading nothing past it)
// and fma(a, b, acc).
template <class V, class = void>
struct OperandsOf {
  using Elem = typename V::T;
  using Reg = typename V::Reg;
  static constexpr int kDepthGroup = 1;
  static Reg load(const Elem* p) { return V::load(p); }
  static Reg broadcast(const Elem* p) { return V::broadcast(p); }
  static Reg broadcast_first(const Elem* p) { return V::broadcast(p); }
  static typename V::Reg fma(Reg a, Reg b, typename V::Reg c) { return V::fma(a, b, c); }
};
template <class V>
struct OperandsOf<V, std::void_t<typename V::Operands>> : V::Operands {};

// One tile of ROWS x (NV * kLanes) accumulators kept in registers for the whole
// depth; A's packed panel has MR rows per depth group, or with A_IN_PLACE row i is
// read at a + i * lda (layouts in gemm_kernels.h). PARKED: c is a full NR-wide tile
// of raw sums, not C: the accumulators start from it when `accumulate` is set (zero
// otherwise) and end in it as they are, so that a depth can be summed in parts with
// the same roundings as in one pass (MicroKernel::parked_by_rows). B_ROW_PAIRS (G = 2,
// Operands with load_row_pairs and columns_in_order): B read in place from rows ldb
// apart, a depth pair's two rows interleaved in registers; the accumulators then hold
// the columns in the order the interleave leaves them, put back in order before C.
template <class V, int MR, int NV, int ROWS, bool A_IN_PLACE, bool PARKED = false,
          bool B_ROW_PAIRS = false>
void micro_tile(int64_t kc, const typename OperandsOf<V>::Elem* a, int64_t lda,
                const typename OperandsOf<V>::Elem* b, int64_t ldb, typename V::T* c,
                int64_t ldc, int cols, bool accumulate) {
  using O = OperandsOf<V>;
  using Reg = typename V::Reg;
  constexpr int L = V::kLanes;
  constexpr int NR = NV * L;
  constexpr int G = O::kDepthGroup;
  constexpr int kStepBytes = NR * G * int(sizeof(typename O::Elem));  // one B panel step
  // Elements B advances by per depth group: a packed panel's step, or G rows in place.
  const int64_t b_step = B_ROW_PAIRS ? G * ldb : ldb;
  Reg acc[ROWS][NV];
#pragma GCC unroll 16
  for (int i = 0; i < ROWS; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j)
      acc[i][j] = PARKED && accumulate ? V::load(c + i * ldc + j * L) : V::zero();

  // C is read only at the end: start fetching its lines now.
#pragma GCC unroll 16
  for (int i = 0; i < ROWS; ++i) {
    __builtin_prefetch(c + i * ldc, 1);
    __builtin_prefetch(c + i * ldc + NR - 1, 1);
  }
  // A read in place: a pointer to every third row, the two rows after it addressed as
  // pointer + lda and + 2 lda (x86's base + index * scale), so that 12 rows take 4
  // registers and the lda multiple, not 12 offsets the compiler spills to the stack.
  constexpr int kGroups = A_IN_PLACE ? (ROWS + 2) / 3 : 1;
  const typename O::Elem* third_rows[kGroups];
#pragma GCC unroll 16
  for (int g = 0; g < kGroups; ++g) third_rows[g] = a + 3 * g * lda;
  // One depth group: B's NV vectors against each row's broadcast group of A. `partial`
  // (a std::bool_constant): the last group, of fewer than G depth steps.
  auto step = [&](auto broadcast_a, auto partial) __attribute__((always_inline)) {
    // A's micro-panel streams from L2 (a packed B's stays in L1; B read in place
    // jumps a row each step): fetch both ahead, as the loads would otherwise wait on
    // each new line.
    if (!A_IN_PLACE) __builtin_prefetch(a + kPrefetchSteps * MR * G);
    typename O::Reg bv[NV];
    if constexpr (B_ROW_PAIRS && decltype(partial)::value) {
      O::load_row_pairs_first(b, bv);  // not a row past B's last
    } else if constexpr (B_ROW_PAIRS) {
      // Each of the G rows' NR elements (bf16: 64 bytes, a line where aligned).
#pragma GCC unroll 4
      for (int r = 0; r < G; ++r) __builtin_prefetch(b + kPrefetchSteps * b_step + r * ldb);
      O::load_row_pairs(b, ldb, bv);
    } else {
#pragma GCC unroll 16
      for (int line = 0; line < kStepBytes; line += 64)
        __builtin_prefetch(b + kPrefetchSteps * ldb + line / int(sizeof(typename O::Elem)));
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) bv[j] = O::load(b + j * L * G);
    }
#pragma GCC unroll 16
    for (int i = 0; i < ROWS; ++i) {
      const typename O::Reg ai =
          broadcast_a(A_IN_PLACE ? third_rows[i / 3] + (i % 3) * lda : a + i * G);
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) acc[i][j] = O::fma(ai, bv[j], acc[i][j]);
    }
    if (A_IN_PLACE) {
#pragma GCC unroll 16
      for (int g = 0; g < kGroups; ++g) third_rows[g] += G;
    } else {
      a += MR * G;
    }
    b += b_step;
  };
  const int64_t groups = kc / G;
  constexpr int U = depth_unroll<V>(0);
  int64_t p = 0;
  for (; p + U <= groups; p += U) {
#pragma GCC unroll 8
    for (int u = 0; u < U; ++u)
      step([](const typename O::Elem* q) { return O::broadcast(q); }, std::false_type{});
  }
  for (; p < groups; ++p)
    step([](const typename O::Elem* q) { return O::broadcast(q); }, std::false_type{});
  if constexpr (G > 1) {
    // A last, partial group: packed panels hold it zero-padded; A read in place must
    // not be read past its last element (the next one may be anything, even NaN), nor
    // B read in place past its last row.
    if (kc % G != 0) {
      step([](const typename O::Elem* q) {
        return A_IN_PLACE ? O::broadcast_first(q) : O::broadcast(q);
      }, std::true_type{});
    }
  }
  if constexpr (B_ROW_PAIRS) {
#pragma GCC unroll 16
    for (int i = 0; i < ROWS; ++i) O::columns_in_order(acc[i]);
  }

  if (PARKED || cols == NR) {
#pragma GCC unroll 16
    for (int i = 0; i < ROWS; ++i) {
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) {
        typename V::T* cij = c + i * ldc + j * L;
        V::store(cij, !PARKED && accumulate ? V::add(V::load(cij), acc[i][j]) : acc[i][j]);
      }
    }
    return;
  }
#pragma GCC unroll 16
  for (int i = 0; i < ROWS; ++i) {
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) {
      const int n = cols - j * L < L ? cols - j * L : L;
      if (n <= 0) break;
      typename V::T* cij = c + i * ldc + j * L;
      V::store_first(cij, accumulate ? V::add(V::load_first(cij, n), acc[i][j]) : acc[i][j], n);
    }
  }
}

// Elements of C in a strip (see strip_tile): its sums, 16 KiB of float, stay in L1.
inline constexpr int kStripElements = 4096;
// A strip sums kStripDepth rows of B per pass over its sums, and prefetches B
// kStripRowsAhead rows ahead into L2 (not L1: with 16 KiB of sums, rows that far ahead
// would evict them from a 32 KiB L1). Batch 1, 1 x 4096 -> 4096 float, `_native.gemm`, Zen 4,
// one step a pass and 2 rows ahead into L1 -> 4 steps and 8 rows ahead into L2: one thread
// 4.2-4.5 -> 2.6-2.9 ms, two threads 3.3-3.5 -> 2.0-2.1 ms (numpy's OpenBLAS gemv on one
// thread: 2.6-3.0 ms).
inline constexpr int kStripDepth = 4;
inline constexpr int kStripRowsAhead = 8;
inline constexpr int kStripFetchLocality = 2;  // __builtin_prefetch's: 2 = L2 and outward

// ROWS (<= MR) rows of C, `cols` columns (ROWS x cols, rounded up to whole vectors, at
// most kStripElements), with B read in place and A packed (MR rows a depth step): the sums
// are kept in an L1 buffer while each depth step reads one contiguous run of B's row,
// cols elements long, once for all the rows, so that a dense layer with a batch of a few
// rows streams its kernel row by row. A register tile reads 128 bytes of each kernel row
// per depth step and comes back to every row's pages once per pass (batch 1, 1 x 4096
// -> 4096, two threads: 1.98 ms with register tiles, 1.29 ms in strips, Xeon). Each sum runs
// from zero over the depth, one fma a step, and is then stored or added to C, as in
// micro_tile, so the results are the same bits. B is stored as S: T (the engine's strips,
// cols a multiple of nr), or bfloat16 for T = float, widened as it is loaded (the bfloat16
// dense forward's strips, MicroKernel::strip_bf16_by_rows).
template <class V, int MR, int ROWS, typename S = typename V::T>
void strip_tile(int64_t kc, const typename V::T* a, int64_t /*lda*/, const S* b, int64_t ldb,
                typename V::T* c, int64_t ldc, int cols, bool accumulate) {
  using T = typename V::T;
  using Reg = typename V::Reg;
  using St = Stored<V, S>;
  constexpr int L = V::kLanes;
  const int whole = cols / L * L, left = cols - whole;
  const int ld = whole + (left > 0 ? L : 0);  // a row of sums, whole vectors
  alignas(64) T sums[kStripElements];
  for (int e = 0; e < ROWS * ld; e += L) V::store(sums + e, V::zero());
  // D rows of B (depth steps) per pass over the sums: each sum is loaded and stored
  // once for D fmas, chained in depth order (the same bits as one step at a time).
  auto steps = [&](int64_t p, auto depth) __attribute__((always_inline)) {
    constexpr int D = decltype(depth)::value;
    Reg ar[D][ROWS];
    const S* rows[D];
#pragma GCC unroll 4
    for (int d = 0; d < D; ++d) {
#pragma GCC unroll 16
      for (int r = 0; r < ROWS; ++r) ar[d][r] = V::broadcast(a + (p + d) * MR + r);
      rows[d] = b + (p + d) * ldb;
    }
    const S* ahead = b + (p + kStripRowsAhead) * ldb;
    const bool fetch = p + kStripRowsAhead + D <= kc;
    auto add_rows = [&](int j, auto load) __attribute__((always_inline)) {
      Reg bv[D];
#pragma GCC unroll 4
      for (int d = 0; d < D; ++d) bv[d] = load(rows[d] + j);
#pragma GCC unroll 16
      for (int r = 0; r < ROWS; ++r) {
        T* s = sums + r * ld + j;
        Reg acc = V::load(s);
#pragma GCC unroll 4
        for (int d = 0; d < D; ++d) acc = V::fma(ar[d][r], bv[d], acc);
        V::store(s, acc);
      }
    };
    for (int j = 0; j < whole; j += L) {
      if (fetch) {
#pragma GCC unroll 4
        for (int d = 0; d < D; ++d) __builtin_prefetch(ahead + d * ldb + j, 0, kStripFetchLocality);
      }
      add_rows(j, [](const S* q) { return St::load(q); });
    }
    if (left > 0) add_rows(whole, [&](const S* q) { return St::load_first(q, left); });
  };
  int64_t p = 0;
  for (; p + kStripDepth <= kc; p += kStripDepth) steps(p, std::integral_constant<int, kStripDepth>());
  for (; p < kc; ++p) steps(p, std::integral_constant<int, 1>());
  for (int r = 0; r < ROWS; ++r) {
    T* cr = c + r * ldc;
    const T* sr = sums + r * ld;
    for (int j = 0; j < whole; j += L) {
      V::store(cr + j, accumulate ? V::add(V::load(cr + j), V::load(sr + j)) : V::load(sr + j));
    }
    if (left > 0) {
      const Reg sum = V::load(sr + whole);
      V::store_first(cr + whole, accumulate ? V::add(V::load_first(cr + whole, left), sum) : sum, left);
    }
  }
}

// Whether V offers transpose_block (an in-register transpose for packing).
template <class V>
constexpr auto has_transpose_block(int) -> decltype(V::kTransposeBlock, bool()) {
  return true;
}
template <class V>
constexpr bool has_transpose_block(...) {
  return false;
}

// Whether operands O read B in place as row pairs (micro_tile's B_ROW_PAIRS).
template <class O>
constexpr auto has_row_pairs(int) -> decltype(&O::load_row_pairs, bool()) {
  return true;
}
template <class O>
constexpr bool has_row_pairs(...) {
  return false;
}

// How many source rows ahead the packing loops prefetch.
inline constexpr int kPackRowsAhead = 4;

// dst[0, PANEL) = src[0, rows) followed by zeros, in whole vectors: PANEL is a
// micro-tile side (12, 32...), known at compile time so the loop unrolls away.
template <class V, int PANEL>
inline void copy_panel_column(const typename V::T* src, int rows, typename V::T* dst) {
  constexpr int L = V::kLanes;
#pragma GCC unroll 8
  for (int c = 0; c < PANEL; c += L) {
    const int left = rows - c;
    const auto v = left >= L ? V::load(src + c) : (left > 0 ? V::load_first(src + c, left) : V::zero());
    if (PANEL - c >= L) {
      V::store(dst + c, v);
    } else {
      V::store_first(dst + c, v, PANEL - c);
    }
  }
}

// The rows-contiguous packing loop (see pack_strided) for a panel height PANEL known
// at compile time, or 0 for any.
template <class V, int PANEL>
void pack_rows_contiguous(const typename V::T* src, int64_t depth_stride, int64_t r0, int64_t nr,
                          int64_t d0, int64_t nd, int panel, typename V::T* dst) {
  using T = typename V::T;
  // Depth step by depth step: one contiguous read of all nr rows, scattered into
  // the panels (reading panel by panel would jump a whole source row per step).
  const int64_t panels = (nr + panel - 1) / panel;
  constexpr int64_t kLine = 64 / sizeof(T);
  for (int64_t d = 0; d < nd; ++d) {
    const T* in = src + r0 + (d0 + d) * depth_stride;
    // Each depth step starts a new source row (often a new page, where the
    // hardware prefetchers stop): fetch a few rows ahead.
    if (d + kPackRowsAhead < nd) {
      const T* ahead = in + kPackRowsAhead * depth_stride;
      for (int64_t off = 0; off < nr; off += kLine) __builtin_prefetch(ahead + off);
    }
    for (int64_t pi = 0; pi < panels; ++pi) {
      const int rows = nr - pi * panel < panel ? static_cast<int>(nr - pi * panel) : panel;
      T* o = dst + pi * panel * nd + d * panel;
      const T* col = in + pi * panel;
      if constexpr (PANEL > 0) {
        copy_panel_column<V, PANEL>(col, rows, o);
      } else {
        for (int r = 0; r < rows; ++r) o[r] = col[r];
        for (int r = rows; r < panel; ++r) o[r] = T(0);
      }
    }
  }
}

// Packs a strided matrix into micro-panels (layout in gemm_kernels.h). The two
// layouts that matter get their own loops: rows contiguous (a transposed operand,
// e.g. Wᵀ: each depth step is a contiguous copy, in whole vectors for the tile's
// two sides MR and NR, when given) and depth contiguous (a row-major operand: `panel` rows are
// transposed in blocks).
template <class V, int MR = 0, int NR = 0>
void pack_strided(const typename V::T* src, int64_t row_stride, int64_t depth_stride, int64_t r0,
                  int64_t nr, int64_t d0, int64_t nd, int panel, typename V::T* dst) {
  using T = typename V::T;
  if (row_stride == 1) {
    if (panel == MR) {
      pack_rows_contiguous<V, MR>(src, depth_stride, r0, nr, d0, nd, panel, dst);
    } else if (panel == NR) {
      pack_rows_contiguous<V, NR>(src, depth_stride, r0, nr, d0, nd, panel, dst);
    } else {
      pack_rows_contiguous<V, 0>(src, depth_stride, r0, nr, d0, nd, panel, dst);
    }
    return;
  }
  for (int64_t pr = 0; pr < nr; pr += panel) {
    const int rows = nr - pr < panel ? static_cast<int>(nr - pr) : panel;
    T* out = dst + pr * nd;
    const T* in = src + (r0 + pr) * row_stride + d0 * depth_stride;
    if (depth_stride == 1) {
      int64_t d = 0;
      if constexpr (has_transpose_block<V>(0)) {
        // Blocks of B x B transposed in registers (the ISA's hook).
        constexpr int B = V::kTransposeBlock;
        for (; d + B <= nd; d += B) {
          for (int rb = 0; rb < panel; rb += B) {
            const int block_rows = rows - rb < 0 ? 0 : (rows - rb < B ? rows - rb : B);
            const int lanes = panel - rb < B ? panel - rb : B;
            V::transpose_block(in + rb * row_stride + d, row_stride, block_rows,
                               out + d * panel + rb, panel, lanes);
          }
        }
      }
      // Blocks of 8 depth steps: reads 8 contiguous elements of each row, writes
      // 8 contiguous panel columns, so both sides stay within a few cache lines.
      constexpr int kDepthBlock = 8;
      for (; d + kDepthBlock <= nd; d += kDepthBlock) {
        T* o = out + d * panel;
        for (int r = 0; r < rows; ++r) {
          const T* row = in + r * row_stride + d;
#pragma GCC unroll 8
          for (int dd = 0; dd < kDepthBlock; ++dd) o[dd * panel + r] = row[dd];
        }
        for (int r = rows; r < panel; ++r)
#pragma GCC unroll 8
          for (int dd = 0; dd < kDepthBlock; ++dd) o[dd * panel + r] = T(0);
      }
      for (; d < nd; ++d) {
        T* o = out + d * panel;
        for (int r = 0; r < rows; ++r) o[r] = in[r * row_stride + d];
        for (int r = rows; r < panel; ++r) o[r] = T(0);
      }
    } else {
      for (int64_t d = 0; d < nd; ++d) {
        T* o = out + d * panel;
        for (int r = 0; r < rows; ++r) o[r] = in[r * row_stride + d * depth_stride];
        for (int r = rows; r < panel; ++r) o[r] = T(0);
      }
    }
  }
}

// CopyRunsFn: whole vectors, then one masked for the run's last elements.
template <class V>
void copy_runs(const typename V::T* src, int64_t src_stride, int64_t count, int64_t length,
               typename V::T* dst, int64_t dst_stride) {
  constexpr int L = V::kLanes;
  const int64_t whole = length / L * L;
  const int left = static_cast<int>(length - whole);
  for (int64_t r = 0; r < count; ++r, src += src_stride, dst += dst_stride) {
    for (int64_t e = 0; e < whole; e += L) V::store(dst + e, V::load(src + e));
    if (left > 0) V::store_first(dst + whole, V::load_first(src + whole, left), left);
  }
}

// The strips of 1 to sizeof...(RowsMinusOne) rows (for float, on bfloat16 B too).
template <class V, int MR, int... RowsMinusOne>
void set_strips(MicroKernel<typename V::T>& k, std::integer_sequence<int, RowsMinusOne...>) {
  k.strip_elements = kStripElements;
  ((k.strip_by_rows[RowsMinusOne + 1] = &strip_tile<V, MR, RowsMinusOne + 1>), ...);
  if constexpr (std::is_same_v<typename V::T, float>) {
    ((k.strip_bf16_by_rows[RowsMinusOne + 1] = &strip_tile<V, MR, RowsMinusOne + 1, bfloat16_t>),
     ...);
  }
}

template <class V, int MR, int NV, int... RowsMinusOne>
MicroKernel<typename OperandsOf<V>::Elem> make_micro_kernel(
    std::integer_sequence<int, RowsMinusOne...>) {
  MicroKernel<typename OperandsOf<V>::Elem> k{};
  k.mr = MR;
  k.nr = NV * V::kLanes;
  ((k.by_rows[RowsMinusOne + 1] = &micro_tile<V, MR, NV, RowsMinusOne + 1, false>), ...);
  ((k.by_rows_a_in_place[RowsMinusOne + 1] = &micro_tile<V, MR, NV, RowsMinusOne + 1, true>),
   ...);
  if constexpr (OperandsOf<V>::kDepthGroup == 1 && NV > 1) {
    ((k.parked_by_rows[RowsMinusOne + 1] = &micro_tile<V, MR, NV, RowsMinusOne + 1, false, true>), ...);
    ((k.parked_by_rows_a_in_place[RowsMinusOne + 1] =
          &micro_tile<V, MR, NV, RowsMinusOne + 1, true, true>),
     ...);
    set_strips<V, MR>(k, std::make_integer_sequence<int, (MR < kMaxStripRows ? MR : kMaxStripRows)>());
  }
  if constexpr (NV > 1) {
    k.narrow_nr = V::kLanes;
    ((k.narrow_by_rows[RowsMinusOne + 1] = &micro_tile<V, MR, 1, RowsMinusOne + 1, false>), ...);
    ((k.narrow_by_rows_a_in_place[RowsMinusOne + 1] =
          &micro_tile<V, MR, 1, RowsMinusOne + 1, true>),
     ...);
  }
  if constexpr (OperandsOf<V>::kDepthGroup == 1) {
    k.pack = &pack_strided<V, MR, NV * V::kLanes>;
  } else if constexpr (has_row_pairs<OperandsOf<V>>(0)) {
    ((k.row_pairs_by_rows[RowsMinusOne + 1] =
          &micro_tile<V, MR, NV, RowsMinusOne + 1, false, false, true>),
     ...);
    ((k.row_pairs_by_rows_a_in_place[RowsMinusOne + 1] =
          &micro_tile<V, MR, NV, RowsMinusOne + 1, true, false, true>),
     ...);
  }
  if constexpr (std::is_same_v<typename OperandsOf<V>::Elem, typename V::T>) {
    k.copy_runs = &copy_runs<V>;
    constexpr auto batches = std::make_integer_sequence<int, kMaxDotOuterRows>();
    set_dot_outer_rows<V, typename V::T>(k.dot_outer_by_rows, batches);
    if constexpr (std::is_same_v<typename V::T, float>) {
      set_dot_outer_rows<V, bfloat16_t>(k.dot_outer_bf16_by_rows, batches);
    }
  }
  return k;
}

// The micro-kernel with MR x (NV * kLanes) tiles, one instantiation per row count
// (with pack_strided as its packing loops when operands are the accumulators' type;
// other operand types set their own).
template <class V, int MR, int NV>
MicroKernel<typename OperandsOf<V>::Elem> make_micro_kernel() {
  static_assert(MR <= kMaxMicroRows, "by_rows is too small for this MR");
  return make_micro_kernel<V, MR, NV>(std::make_integer_sequence<int, MR>());
}

// kChains independent FMA dependency chains: enough to cover the FMA latency on
// every FMA port, so the loop runs at the core's FMA throughput. The chains converge
// to a fixed point (x = 0.5 x + 0.5), so values stay normal for any step count.
// (No timing here: std templates instantiated under ISA flags could be picked by the
// linker for baseline code too.)
template <class V>
int64_t fma_chains(int64_t steps) {
  using Reg = typename V::Reg;
  using T = typename V::T;
  constexpr int kChains = 12;
  const T half_value = T(0.5);
  const Reg half = V::broadcast(&half_value);
  Reg acc[kChains];
  for (int c = 0; c < kChains; ++c) {
    const T start = T(c);
    acc[c] = V::broadcast(&start);
  }
  for (int64_t s = 0; s < steps; ++s) {
#pragma GCC unroll 12
    for (int c = 0; c < kChains; ++c) acc[c] = V::fma(acc[c], half, half);
  }
  // Store the chains so the compiler cannot drop them.
  T sink[V::kLanes];
  Reg total = acc[0];
  for (int c = 1; c < kChains; ++c) total = V::add(total, acc[c]);
  V::store(sink, total);
  volatile T keep = sink[0];
  (void)keep;
  return steps * kChains * V::kLanes * 2;
}

}  // namespace isa_generic
}  // namespace fusedlayers
