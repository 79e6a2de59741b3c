// The GEMM engine every op runs on: C = A·B, with A and B read through packing
// sources (where prologues such as the activation derivative live) and each finished
// output tile handed to an epilogue (bias, activation, store) while it is in cache.
#pragma once

#include <cstdint>
#include <functional>

#include "parallel.h"

namespace fusedlayers {

// A matrix the engine packs from, seen as rows x depth: A is m x k, and B is given
// transposed, as n x k, so both operands pack the same way.
template <typename Acc>
struct PackSource {
  int64_t rows = 0;
  int64_t depth = 0;
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

// C[m, n] = A[m, k] · B[k, n] with a.rows == m, b.rows == n, a.depth == b.depth == k.
// k == 0 yields zero tiles; m == 0 or n == 0 calls nothing. The summation order of
// each element is fixed by k alone, so results are identical for any thread count.
template <typename Acc>
void gemm(const PackSource<Acc>& a, const PackSource<Acc>& b, const TileEpilogue<Acc>& epilogue,
          TaskRunner& runner);

// The instruction set of the micro-kernel gemm dispatches to on this CPU.
const char* gemm_kernel_isa();

}  // namespace fusedlayers
