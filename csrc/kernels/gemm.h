// The GEMM engine every op runs on: C = A·B, with A and B read through packing
// sources (where prologues such as the activation derivative live) and each finished
// output tile handed to an epilogue (bias, activation, store) while it is in cache.
#pragma once

#include <cstdint>
#include <functional>

#include "parallel.h"

namespace fusedlayers {

// A matrix the engine packs from, seen as rows x depth: A is m x k, and B is given
// transposed, as n x k, so both operands pack the same way. Either `data` is set (a
// plain strided matrix, element (r, d) at data[r * row_stride + d * depth_stride],
// which the engine packs with its own vectorized loops) or `pack` is (any other
// source: other element types, prologues, extra rows).
template <typename Acc>
struct PackSource {
  int64_t rows = 0;
  int64_t depth = 0;
  const Acc* data = nullptr;
  int64_t row_stride = 0;
  int64_t depth_stride = 0;
  // Writes rows [r0, r0 + nr) x depth [d0, d0 + nd) as micro-panels of `panel` rows,
  // depth-major inside a panel: element (r, d) lands at
  //   dst[((r - r0) / panel) * panel * nd + (d - d0) * panel + (r - r0) % panel].
  // Rows of the last micro-panel beyond r0 + nr must be written as zero.
  std::function<void(int64_t r0, int64_t nr, int64_t d0, int64_t nd, int panel, Acc* dst)> pack;
};

// Receives a finished tile of C (the whole depth summed): rows [i0, i0 + mi), columns
// [j0, j0 + nj), element (i, j) at tile[(i - i0) * ld + (j - j0)]. Tiles are disjoint
// and may arrive from several threads at once.
template <typename Acc>
using TileEpilogue = std::function<void(int64_t i0, int64_t mi, int64_t j0, int64_t nj,
                                        const Acc* tile, int64_t ld)>;

// Where the engine may keep C while it sums over the depth: row-major, element
// (i, j) at c[i * ldc + j]. Given one (e.g. the op's float output), the engine
// accumulates there and the epilogue receives tiles pointing into it, which it may
// overwrite in place; an empty epilogue then leaves the plain product there.
// Without one, the engine keeps C in its own per-thread scratch.
template <typename Acc>
struct GemmAccumulator {
  Acc* c = nullptr;
  int64_t ldc = 0;
};

// C[m, n] = A[m, k] · B[k, n] with a.rows == m, b.rows == n, a.depth == b.depth == k.
// k == 0 yields zero tiles; m == 0 or n == 0 calls nothing. Tiles reach the epilogue
// one micro-tile at a time (a few rows x a few dozen columns), just computed. The
// summation order of each element is fixed by the shape alone (and the ISA), so
// results are identical for any thread count.
template <typename Acc>
void gemm(const PackSource<Acc>& a, const PackSource<Acc>& b, const TileEpilogue<Acc>& epilogue,
          TaskRunner& runner, GemmAccumulator<Acc> accumulator = {});

// gemm for a small C with a long depth (a weight gradient summing over every
// position of a batch): the engine parallelizes over tiles of C only, so when C has
// at most 2^16 elements the depth is cut into slices summed by separate
// tasks into partials, added in order, and the epilogue then receives all of C at
// once. The slice count depends on the shape alone, so results are identical for
// any thread count. Otherwise it is gemm.
template <typename Acc>
void gemm_split_depth(const PackSource<Acc>& a, const PackSource<Acc>& b,
                      const TileEpilogue<Acc>& epilogue, TaskRunner& runner);

// The engine's block sizes for Acc on this CPU and ISA: micro-tiles are mr x nr;
// A is packed mc rows, B nc rows, both kc deep at a time (the depth is cut into equal
// steps of at most kc). Tests use them to hit every edge.
struct GemmBlocking {
  int64_t mr = 0, nr = 0, mc = 0, nc = 0, kc = 0;
};
template <typename Acc>
GemmBlocking gemm_blocking();

// Packs rows [r0, r0 + nr) x depth [d0, d0 + nd) of the strided matrix
// element(r, d) = data[r * row_stride + d * depth_stride] in the PackSource layout
// (zero rows completing the last panel), with the dispatched ISA's vectorized loops:
// for pack callbacks that add something (a prologue, extra rows) to a plain source.
template <typename Acc>
void pack_strided_panels(const Acc* data, int64_t row_stride, int64_t depth_stride, int64_t r0,
                         int64_t nr, int64_t d0, int64_t nd, int panel, Acc* dst);

// The instruction set of the micro-kernel gemm dispatches to on this CPU: "avx512",
// "avx2" or "portable" (FUSEDLAYERS_ISA can force a lower one; see gemm_kernels.h).
const char* gemm_kernel_isa();

// The fp32 FMA throughput of one core running the dispatched ISA's peak loop for
// about `seconds`, as floating-point operations done (call it from N threads at once
// to measure N cores).
int64_t fma_peak_flops(double seconds);

}  // namespace fusedlayers
