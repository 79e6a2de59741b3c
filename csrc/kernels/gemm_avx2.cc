// AVX2 + FMA micro-kernels (compiled with -mavx2 -mfma; called only when
// cpu_features() reports both). Tiles are 6 rows x 2 ymm: 12 accumulators + 2 B
// vectors + 1 broadcast within the 16 ymm registers.
#include <immintrin.h>

#include "gemm_microkernel.h"

namespace fusedlayers {
namespace {

// Lane masks for maskload/maskstore: kFirstLanes + 8 - n starts n all-ones words.
alignas(32) constexpr int32_t kFirstLanes[16] = {-1, -1, -1, -1, -1, -1, -1, -1,
                                                 0,  0,  0,  0,  0,  0,  0,  0};

struct Avx2Float {
  using T = float;
  using Reg = __m256;
  static constexpr int kLanes = 8;
  static constexpr int kDepthUnroll = 4;  // see isa_generic::depth_unroll
  static Reg zero() { return _mm256_setzero_ps(); }
  static Reg load(const T* p) { return _mm256_loadu_ps(p); }
  static Reg broadcast(const T* p) { return _mm256_broadcast_ss(p); }
  static Reg fma(Reg a, Reg b, Reg c) { return _mm256_fmadd_ps(a, b, c); }
  static Reg add(Reg a, Reg b) { return _mm256_add_ps(a, b); }
  static void store(T* p, Reg v) { _mm256_storeu_ps(p, v); }
  static __m256i first(int n) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kFirstLanes + 8 - n));
  }
  static Reg load_first(const T* p, int n) { return _mm256_maskload_ps(p, first(n)); }
  static void store_first(T* p, Reg v, int n) { _mm256_maskstore_ps(p, first(n), v); }
  static void stream(T* p, Reg v) { _mm256_stream_ps(p, v); }
  static void stream_fence() { _mm_sfence(); }
};

struct Avx2Double {
  using T = double;
  using Reg = __m256d;
  static constexpr int kLanes = 4;
  static Reg zero() { return _mm256_setzero_pd(); }
  static Reg load(const T* p) { return _mm256_loadu_pd(p); }
  static Reg broadcast(const T* p) { return _mm256_broadcast_sd(p); }
  static Reg fma(Reg a, Reg b, Reg c) { return _mm256_fmadd_pd(a, b, c); }
  static Reg add(Reg a, Reg b) { return _mm256_add_pd(a, b); }
  static void store(T* p, Reg v) { _mm256_storeu_pd(p, v); }
  // Each double lane takes two mask words.
  static __m256i first(int n) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kFirstLanes + 8 - 2 * n));
  }
  static Reg load_first(const T* p, int n) { return _mm256_maskload_pd(p, first(n)); }
  static void store_first(T* p, Reg v, int n) { _mm256_maskstore_pd(p, first(n), v); }
  static void stream(T* p, Reg v) { _mm256_stream_pd(p, v); }
  static void stream_fence() { _mm_sfence(); }
};

IsaKernels make_avx2_kernels() {
  IsaKernels k{};
  k.isa = "avx2";
  k.f32 = isa_generic::make_micro_kernel<Avx2Float, 6, 2>();
  k.f64 = isa_generic::make_micro_kernel<Avx2Double, 6, 2>();
  k.fma_chains = &isa_generic::fma_chains<Avx2Float>;
  return k;
}

}  // namespace

const IsaKernels& avx2_kernels() {
  static const IsaKernels kernels = make_avx2_kernels();
  return kernels;
}

}  // namespace fusedlayers
