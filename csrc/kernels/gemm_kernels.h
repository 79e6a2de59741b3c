// The per-ISA pieces of the GEMM engine: register-tile micro-kernels, the packing
// loops for plain strided operands, and the FMA peak loop. Each ISA lives in its own
// translation unit compiled with that ISA's flags (gemm_avx512.cc, gemm_avx2.cc,
// gemm_portable.cc); gemm.cc picks one at run time from cpu_features().
#pragma once

#include <cstdint>

namespace fusedlayers {

// The most rows any micro-kernel's tile has (sizes the by_rows table).
inline constexpr int kMaxMicroRows = 16;

// c[i * ldc + j] (+)= sum_p a[p * mr + i] * b[p * ldb + j] for i < rows (fixed by the
// table slot), j < cols (<= nr). a is a packed micro-panel, depth-major (lda unused);
// the by_rows_a_in_place kernels read a[i * lda + p] instead, rows of a plain matrix
// in place. b is a packed micro-panel too (ldb = nr) or, when cols == nr, nr
// contiguous columns of a row-major matrix read in place (ldb its row stride). Without
// `accumulate` c is overwritten. Each element sums p in order with one fused
// multiply-add per step, so the result depends only on kc and the data.
template <typename T>
using MicroTileFn = void (*)(int64_t kc, const T* a, int64_t lda, const T* b, int64_t ldb, T* c,
                             int64_t ldc, int cols, bool accumulate);

// Packs rows [r0, r0 + nr) x depth [d0, d0 + nd) of the matrix
// element(r, d) = src[r * row_stride + d * depth_stride] into micro-panels of `panel`
// rows (the PackSource layout in gemm.h), zero-filling the last panel's missing rows.
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
  MicroTileFn<T> by_rows_a_in_place[kMaxMicroRows + 1];
  PackStridedFn<T> pack;
};

struct IsaKernels {
  const char* isa;
  MicroKernel<float> f32;
  MicroKernel<double> f64;
  // Runs `steps` rounds of independent register-resident fp32 FMA chains and returns
  // the floating-point operations done (2 per lane per FMA), for peak measurement.
  int64_t (*fma_chains)(int64_t steps);
};

// Defined only when the build has that TU; callers check cpu_features() first.
const IsaKernels& avx512_kernels();
const IsaKernels& avx2_kernels();
const IsaKernels& portable_kernels();

// The kernels gemm dispatches to: the best ISA the CPU has, or a lower one named by
// the FUSEDLAYERS_ISA environment variable (avx512, avx2, portable) at first use.
const IsaKernels& active_kernels();

}  // namespace fusedlayers
