// The per-ISA pieces of the GEMM engine: register-tile micro-kernels, the packing
// loops for plain strided operands, and the FMA peak loop. Each ISA lives in its own
// translation unit compiled with that ISA's flags (gemm_avx512.cc, gemm_avx2.cc,
// gemm_portable.cc, and gemm_avx512_bf16.cc for the bfloat16 kernel); gemm.cc picks
// one at run time from cpu_features().
#pragma once

#include <cstdint>

#include "dtype.h"
#include "gemm_layout.h"

namespace fusedlayers {

// The most rows any micro-kernel's tile has (sizes the by_rows table; AMX's has 32).
inline constexpr int kMaxMicroRows = 32;
// The most rows a strip has (see MicroKernel::strip_by_rows). A strip is bound by
// loading and storing its sums (once per kStripDepth rows of B), a register tile by B's
// memory traffic with few rows. Dense in tf.function, two threads, register tiles -> strips: 2 x 4096 ->
// 4096 2.4-2.7 -> 1.6-1.8 ms, 4 x 1024 -> 1024 0.40 -> 0.35-0.38 ms; but 8 x 4096 ->
// 4096 2.5 -> 2.6-2.7 ms, hence no more rows (batch 1: see strip_tile). On Zen 4, with
// strips of 4 depth steps a pass, 5-8 rows won at 4096 -> 4096 (6-8 rows 5.3-6.5 ->
// 3.6-5.3 ms) and lost at 1024 -> 1024 (8 rows 0.45-0.48 -> 0.68-0.80 ms): still 4.
inline constexpr int kMaxStripRows = 4;

// c[i * ldc + j] (+)= sum_p a(i, p) * b(p, j) for i < rows (fixed by the table slot),
// j < cols (<= nr), with c in T's accumulation type. a is a packed micro-panel
// (lda unused): with G = kDepthGroup<T>, depth groups of mr x G elements, a(i, p) at
// a[(p / G) * mr * G + i * G + p % G]; the by_rows_a_in_place kernels read
// a(i, p) = a[i * lda + p] instead, rows of a plain matrix in place (for G = 2 they read
// no element past p = kc - 1). b(p, j) = b[(p / G) * ldb + j * G + p % G]: a packed
// micro-panel (ldb = nr * G) or, for G = 1 and cols == nr, nr contiguous columns of a
// row-major matrix read in place (ldb its row stride); for G = 2 the row_pairs kernels
// read b(p, j) = b[p * ldb + j] in place (a plain row-major matrix, cols == nr, its rows
// interleaved into pairs in registers). Without `accumulate` c is
// overwritten. Each element sums its depth groups in order (one fused multiply-add, or
// one dot-product instruction, per group), so the result depends only on kc and the data.
template <typename T>
using MicroTileFn = void (*)(int64_t kc, const T* a, int64_t lda, const T* b, int64_t ldb,
                             acc_t<T>* c, int64_t ldc, int cols, bool accumulate);

// The most rows of dz a one-pass dense backward takes (MicroKernel::dot_outer_by_rows).
inline constexpr int kMaxDotOuterRows = 8;

// For m rows of v (the table slot), v[b * n + j] in T: over `rows` rows of w (w[r * ldw + j],
// j < n), one row at a time, summing in T,
//   dot[b * ld_dot + r] = sum_j w[r, j] * v[b, j]         (a dense layer's dx = dz·Wᵀ)
//   outer[r * ld_outer + j] = sum_b u[b * ld_u + r] * v[b, j]   (dW = xᵀ·dz)
// Each outer element sums from zero, one FMA per b in order, as the micro-tiles do; each
// dot in an order fixed by n alone (vector slots, then lanes). kStream writes outer's
// rows with non-temporal stores (where aligned to the vector), which skip reading each
// line before writing it: for an outer too large to stay in cache anyway. w, u, dot and
// outer are stored as S: T itself, or bfloat16 for T = float (rounded to nearest even when
// stored, and never streamed).
enum class OuterWrite { kStore, kStream };
template <typename T, typename S = T>
using DotOuterRowsFn = void (*)(int64_t rows, int64_t n, const S* w, int64_t ldw, const T* v,
                                const S* u, int64_t ld_u, S* dot, int64_t ld_dot, S* outer,
                                int64_t ld_outer, OuterWrite write);

// A strip (MicroKernel::strip_by_rows) whose B is stored as bfloat16, widened as it is
// loaded, `cols` any count: a bfloat16 dense layer's forward with a batch of a few rows.
using Bf16StripFn = void (*)(int64_t kc, const float* a, int64_t lda, const bfloat16_t* b,
                             int64_t ldb, float* c, int64_t ldc, int cols, bool accumulate);

// dst[r * dst_stride + e] = src[r * src_stride + e] for r < count, e < length: the runs
// of taps an im2col copies (a 3-channel image's 4 taps are 12 floats, where a memmove
// call per run cost more than its copy).
template <typename T>
using CopyRunsFn = void (*)(const T* src, int64_t src_stride, int64_t count, int64_t length,
                            T* dst, int64_t dst_stride);

// Packs rows [r0, r0 + nr) x depth [d0, d0 + nd) of the matrix
// element(r, d) = src[r * row_stride + d * depth_stride] into micro-panels of `panel`
// rows (the PackSource layout in gemm.h), zero-filling the last panel's missing rows
// and, for G = 2 and odd nd, the last depth group's missing element.
template <typename T>
using PackStridedFn = void (*)(const T* src, int64_t row_stride, int64_t depth_stride, int64_t r0,
                               int64_t nr, int64_t d0, int64_t nd, int panel, T* dst);

// These structs are trivial on purpose (no member initializers): the ISA translation
// units build them, and a non-trivial inline constructor compiled with AVX-512 flags
// there could be the copy the linker keeps for baseline code as well.
template <typename T>
struct MicroKernel {
  int mr;  // rows of a tile (A's micro-panel height)
  int nr;  // columns of a tile (B's micro-panel height)
  MicroTileFn<T> by_rows[kMaxMicroRows + 1];  // by_rows[r]: a tile's first r rows
  MicroTileFn<T> by_rows_a_in_place[kMaxMicroRows + 1];  // null: A is always packed
  // Strips of C's first r rows (r <= min(mr, kMaxStripRows)) by up to
  // strip_elements / r columns, a multiple of nr (0 and null: none), for a C of a few
  // rows whose B is read in place (a dense layer with a small batch): the sums kept in
  // L1, each depth step reads one contiguous run of a B row as long as the strip, where
  // an nr-wide tile reads a line or two from each row's page (see strip_tile).
  int strip_elements;
  MicroTileFn<T> strip_by_rows[kMaxStripRows + 1];
  // Full-width tiles that sum a part of the depth into a tile of raw sums (c, ldc) and
  // resume from it (accumulate), null where none: a B read in place is then walked in
  // shorter depth steps, for every tile of rows, than the depth each sum is formed over
  // (see micro_tile's PARKED).
  MicroTileFn<T> parked_by_rows[kMaxMicroRows + 1];
  MicroTileFn<T> parked_by_rows_a_in_place[kMaxMicroRows + 1];
  // Tiles one vector wide, for C's last columns when at most narrow_nr are left (0:
  // none): the full-width tile would spend its FMAs on padding (N = 100 leaves 4 of
  // 32). Same operand layouts, the packed B panel still nr wide.
  int narrow_nr;
  MicroTileFn<T> narrow_by_rows[kMaxMicroRows + 1];
  MicroTileFn<T> narrow_by_rows_a_in_place[kMaxMicroRows + 1];
  // For G = 2 (null otherwise, and for G = 1, whose by_rows read such a B in place
  // already): full-width tiles reading B in place from a row-major matrix, each depth
  // pair's two rows interleaved in registers, so that a C of few rows does not pack the
  // weights into pairs (MicroTileFn's b layout).
  MicroTileFn<T> row_pairs_by_rows[kMaxMicroRows + 1];
  MicroTileFn<T> row_pairs_by_rows_a_in_place[kMaxMicroRows + 1];
  PackStridedFn<T> pack;
  CopyRunsFn<T> copy_runs;  // null where T is not the ISA's vector element (bfloat16)
  // dot_outer_by_rows[m], m <= kMaxDotOuterRows, for float and double (null for bf16);
  // for float, dot_outer_bf16_by_rows too, on bfloat16 storage (null otherwise).
  DotOuterRowsFn<T> dot_outer_by_rows[kMaxDotOuterRows + 1];
  DotOuterRowsFn<T, bfloat16_t> dot_outer_bf16_by_rows[kMaxDotOuterRows + 1];
  // For float, strip_by_rows's twins on bfloat16 B (null otherwise).
  Bf16StripFn strip_bf16_by_rows[kMaxStripRows + 1];
  // Where set, the kernel reads A's packed panels as rows: each of a micro-panel's rows
  // its depth contiguous, a(i, p) = a[i * lda + p] with lda = nd rounded up to G. The
  // engine packs A as usual, then calls this on the packed block (rows a multiple of
  // panel) into a buffer of the same size.
  void (*rows_from_pairs)(const T* panels, int64_t rows, int64_t nd, int panel, T* dst);
  // Where set, called on a thread before it runs micro-kernels for a gemm task.
  void (*prepare)();
};

struct IsaKernels {
  const char* isa;
  MicroKernel<float> f32;
  MicroKernel<double> f64;
  // Runs `steps` rounds of independent register-resident fp32 FMA chains and returns
  // the floating-point operations done (2 per lane per FMA), for peak measurement.
  int64_t (*fma_chains)(int64_t steps);
};

// The bfloat16 compute path: a micro-kernel over pair-interleaved bf16 panels summing
// in float, and the conversion that packs float micro-panels (PackSource layout, G = 1:
// `rows` a multiple of `panel`) as rounded bf16 ones (G = 2), for sources computed in
// float first (the backward prologue's act' x dy).
struct Bf16Kernels {
  const char* name;
  MicroKernel<bfloat16_t> bf16;
  void (*pack_float_panels)(const float* src, int64_t rows, int64_t nd, int panel,
                            bfloat16_t* dst);
  // dst[i * ld_dst + j] = src[i * ld_src + j] rounded to bf16, for i < rows, j < cols: a
  // whole tile in one call (a call per row of a micro-tile cost as much as the rounding).
  void (*round_floats)(const float* src, int64_t ld_src, int64_t rows, int64_t cols,
                       bfloat16_t* dst, int64_t ld_dst);
};

// Defined only when the build has that TU; callers check cpu_features() first.
const IsaKernels& avx512_kernels();
const IsaKernels& avx2_kernels();
const IsaKernels& portable_kernels();
const Bf16Kernels& avx512_bf16_kernels();  // AVX512_BF16 (vdpbf16ps)
const Bf16Kernels& amx_kernels();          // AMX-BF16 (tdpbf16ps); needs amx_tiles_permitted()
// Asks Linux for this process's AMX tile state, once; whether it was granted.
bool amx_tiles_permitted();

// The kernels gemm dispatches to: the best ISA the CPU has, or a lower one named by
// the FUSEDLAYERS_ISA environment variable (avx512, avx2, portable) at first use.
const IsaKernels& active_kernels();

// The bfloat16 kernels, or null where bf16 operands are to be widened to float: the CPU
// lacks AVX512_BF16, FUSEDLAYERS_ISA excludes avx512, or FUSEDLAYERS_BF16_KERNEL=widen.
// AMX where the CPU has it and the OS grants it, else AVX512_BF16; the environment
// variable may name a lower one (amx, dpbf16, widen).
const Bf16Kernels* active_bf16_kernels();

// The dispatched micro-kernels for packed elements In: float and double from
// active_kernels(), bfloat16_t from active_bf16_kernels() (which must not be null).
template <typename In>
const MicroKernel<In>& micro_kernel();

}  // namespace fusedlayers
