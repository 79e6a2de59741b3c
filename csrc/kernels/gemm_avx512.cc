// AVX-512 micro-kernels (compiled with -mavx512f -mavx512bw -mavx512vl -mavx512dq
// -mfma; called only when cpu_features() reports them). Tiles are 12 rows x 2 zmm:
// 24 accumulators + 2 B vectors + 1 broadcast fit the 32 zmm registers, and each
// depth step issues 24 FMAs against 2 loads and 12 broadcasts, within the load ports.
#include <immintrin.h>

#include "gemm_avx512_vectors.h"
#include "gemm_microkernel.h"

namespace fusedlayers {
namespace {

struct Avx512Double {
  using T = double;
  using Reg = __m512d;
  static constexpr int kLanes = 8;
  static Reg zero() { return _mm512_setzero_pd(); }
  static Reg load(const T* p) { return _mm512_loadu_pd(p); }
  static Reg broadcast(const T* p) { return _mm512_set1_pd(*p); }
  static Reg fma(Reg a, Reg b, Reg c) { return _mm512_fmadd_pd(a, b, c); }
  static Reg add(Reg a, Reg b) { return _mm512_add_pd(a, b); }
  static void store(T* p, Reg v) { _mm512_storeu_pd(p, v); }
  static __mmask8 first(int n) { return static_cast<__mmask8>((1u << n) - 1u); }
  static Reg load_first(const T* p, int n) { return _mm512_maskz_loadu_pd(first(n), p); }
  static void store_first(T* p, Reg v, int n) { _mm512_mask_storeu_pd(p, first(n), v); }
  static void stream(T* p, Reg v) { _mm512_stream_pd(p, v); }
  static void stream_fence() { _mm_sfence(); }
};

IsaKernels make_avx512_kernels() {
  IsaKernels k{};
  k.isa = "avx512";
  k.f32 = isa_generic::make_micro_kernel<Avx512Float, 12, 2>();
  k.f64 = isa_generic::make_micro_kernel<Avx512Double, 12, 2>();
  k.fma_chains = &isa_generic::fma_chains<Avx512Float>;
  return k;
}

}  // namespace

const IsaKernels& avx512_kernels() {
  static const IsaKernels kernels = make_avx512_kernels();
  return kernels;
}

}  // namespace fusedlayers
