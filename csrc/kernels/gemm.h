// The GEMM engine every op runs on: C = A·B, with A and B read through packing
// sources (where prologues such as the activation derivative live) and each finished
// output tile handed to an epilogue (bias, activation, store) while it is in cache.
#pragma once

#include <cstdint>
#include <functional>

#include "dtype.h"
#include "gemm_layout.h"
#include "parallel.h"

namespace fusedlayers {

// A matrix the engine packs from, seen as rows x depth: A is m x k, and B is given
// transposed, as n x k, so both operands pack the same way. Either `data` is set (a
// plain strided matrix, element (r, d) at data[r * row_stride + d * depth_stride],
// which the engine packs with its own vectorized loops) or `pack` is (any other
// source: other element types, prologues, extra rows). In is the packed element type:
// float or double (summed in their own type), or bfloat16_t (summed in float, with the
// bf16 kernels only: see gemm_bf16_kernel).
template <typename In>
struct PackSource {
  int64_t rows = 0;
  int64_t depth = 0;
  const In* data = nullptr;
  int64_t row_stride = 0;
  int64_t depth_stride = 0;
  // Writes rows [r0, r0 + nr) x depth [d0, d0 + nd) as micro-panels of `panel` rows,
  // depth-major inside a panel in groups of G = kDepthGroup<In> consecutive depth
  // elements (1 for float and double, 2 for bfloat16: the pair-interleaved VNNI
  // layout). With r = r - r0, d = d - d0 and ndp = nd rounded up to a multiple of G,
  // element (r, d) lands at
  //   dst[(r / panel) * panel * ndp + (d / G) * panel * G + (r % panel) * G + d % G].
  // Rows of the last micro-panel beyond r0 + nr, and depth [nd, ndp), must be written
  // as zero.
  std::function<void(int64_t r0, int64_t nr, int64_t d0, int64_t nd, int panel, In* dst)> pack;
  // For B only: its panels already packed by pack_b_once (rows and depth still set;
  // data and pack are then not read), for several products with the same B.
  const In* packed = nullptr;
};

// B's panels packed once, for every depth step, as gemm would pack them for any C
// (a convolution's kernel, multiplied by every group of images), into `out`
// (packed_b_size(b) elements): set out as PackSource::packed of a copy of b. Same
// results as packing per call.
template <typename In>
int64_t packed_b_size(const PackSource<In>& b);
template <typename In>
void pack_b_once(const PackSource<In>& b, In* out, TaskRunner& runner);

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

// C[m, n] = A[m, k] · B[k, n] with a.rows == m, b.rows == n, a.depth == b.depth == k,
// C summed in acc_t<In>. k == 0 yields zero tiles; m == 0 or n == 0 calls nothing.
// Tiles reach the epilogue one micro-tile at a time (a few rows x a few dozen
// columns), just computed. The summation order of each element is fixed by the shape
// alone (and the ISA), so results are identical for any thread count.
template <typename In>
void gemm(const PackSource<In>& a, const PackSource<In>& b, const TileEpilogue<acc_t<In>>& epilogue,
          TaskRunner& runner, GemmAccumulator<acc_t<In>> accumulator = {});

// gemm for a small C with a long depth (a weight gradient summing over every
// position of a batch): the engine parallelizes over tiles of C only, so when C has
// at most 2^16 elements the depth is cut into slices summed by separate
// tasks into partials, added in order, and the epilogue then receives all of C at
// once (in the accumulator, where given). The slice count depends on the shape alone,
// so results are identical for any thread count. Otherwise it is gemm.
template <typename In>
void gemm_split_depth(const PackSource<In>& a, const PackSource<In>& b,
                      const TileEpilogue<acc_t<In>>& epilogue, TaskRunner& runner,
                      GemmAccumulator<acc_t<In>> accumulator = {});

// Whether gemm runs an m x n x k product as one task on any thread count (too little
// work to hand part of it to another thread): a caller with independent products that
// small may run them side by side, one per thread.
bool gemm_fits_one_task(int64_t m, int64_t n, int64_t k);

// The engine's block sizes for In on this CPU and ISA: micro-tiles are mr x nr;
// A is packed mc rows, B nc rows, both kc deep at a time (the depth is cut into equal
// steps of at most kc). Tests use them to hit every edge.
struct GemmBlocking {
  int64_t mr = 0, nr = 0, mc = 0, nc = 0, kc = 0;
};
template <typename In>
GemmBlocking gemm_blocking();

// Packs rows [r0, r0 + nr) x depth [d0, d0 + nd) of the strided matrix
// element(r, d) = data[r * row_stride + d * depth_stride] in the PackSource layout
// (zero rows completing the last panel), with the dispatched ISA's vectorized loops:
// for pack callbacks that add something (a prologue, extra rows) to a plain source.
template <typename In>
void pack_strided_panels(const In* data, int64_t row_stride, int64_t depth_stride, int64_t r0,
                         int64_t nr, int64_t d0, int64_t nd, int panel, In* dst);

// Packs float micro-panels (the PackSource layout for G = 1, `rows` a multiple of
// `panel`) as bf16 ones (G = 2), each element rounded to nearest even: for bf16
// sources computed in float first (the backward prologue's act' x dy). bf16 kernels only.
void pack_float_panels_as_bf16(const float* src, int64_t rows, int64_t nd, int panel,
                               bfloat16_t* dst);

// dst[i * ld_dst + j] = src[i * ld_src + j] rounded to bf16 (nearest even, NaN kept
// quiet: bfloat16_from_float) for i < rows, j < cols, vectorized where the bf16 kernels
// are; round_floats_to_bf16 is one row of it.
void round_float_rows_to_bf16(const float* src, int64_t ld_src, int64_t rows, int64_t cols,
                              bfloat16_t* dst, int64_t ld_dst);
inline void round_floats_to_bf16(const float* src, int64_t n, bfloat16_t* dst) {
  round_float_rows_to_bf16(src, n, 1, n, dst, n);
}

// The engine's bfloat16 kernel, summing bf16 pairs in float (operands packed as bf16
// pairs, gemm<bfloat16_t>): "amx" (AMX-BF16 tiles, tdpbf16ps) where the CPU has AMX and
// Linux grants the process its tile state, else "dpbf16" (AVX512_BF16's vdpbf16ps) where
// the CPU has AVX512_BF16, both with the avx512 ISA in use; else "widen" (no bf16
// kernel: bf16 operands are widened to float while packing, gemm<float>).
// FUSEDLAYERS_BF16_KERNEL=amx|dpbf16|widen forces one (a lower one than the CPU's best;
// an unavailable one falls back, with a warning). Read once.
const char* gemm_bf16_kernel();

// Whether a bf16 product whose B operand (the weights) is reused by `reuse` rows of A
// (a dense layer's batch; 0: run the kernel whatever the shape) runs on bf16 pairs:
// always with AMX; with dpbf16 always on AMD (Zen 4 runs vdpbf16ps at twice the flops
// of fp32 FMAs) and on Intel only for few rows per weight, as there vdpbf16ps does 0.69x
// the flops of fp32 FMAs, so products bound by the micro-kernel run faster widened,
// while those with few rows per weight are bound by packing the weights, which bf16
// pairs halve. FUSEDLAYERS_BF16_KERNEL=dpbf16 runs every shape on it.
bool gemm_packs_bf16(int64_t reuse);

// The instruction set of the micro-kernel gemm dispatches to on this CPU: "avx512",
// "avx2" or "portable" (FUSEDLAYERS_ISA can force a lower one; see gemm_kernels.h).
const char* gemm_kernel_isa();

// The fp32 FMA throughput of one core running the dispatched ISA's peak loop for
// about `seconds`, as floating-point operations done (call it from N threads at once
// to measure N cores).
int64_t fma_peak_flops(double seconds);

}  // namespace fusedlayers
