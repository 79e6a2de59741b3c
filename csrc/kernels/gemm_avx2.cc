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
  // Halves, pairs and singles rather than vmaskmovps, whose store form is microcoded on
  // AMD's cores (tens of cycles): every edge tile and every 6-row panel of A (4 + 2)
  // stores this way.
  static void store_first(T* p, Reg v, int n) {
    if (n >= kLanes) return store(p, v);
    __m128 part = _mm256_castps256_ps128(v);
    if (n >= 4) {
      _mm_storeu_ps(p, part);
      part = _mm256_extractf128_ps(v, 1);
      p += 4;
      n -= 4;
    }
    if (n >= 2) {
      _mm_storel_pi(reinterpret_cast<__m64*>(p), part);
      part = _mm_movehl_ps(part, part);
      p += 2;
      n -= 2;
    }
    if (n == 1) _mm_store_ss(p, part);
  }
  static void stream(T* p, Reg v) { _mm256_stream_ps(p, v); }
  static void stream_fence() { _mm_sfence(); }

  // Packing hook (see pack_strided): reads `rows` (<= 8) rows of 8 contiguous elements,
  // src + r * row_stride, and writes their transpose: 8 rows of `lanes` elements at
  // dst + c * dst_stride, lanes past `rows` as zeros. 24 shuffles per 8 x 8 block
  // instead of 64 scalar loads and stores, for operands whose rows run along the depth:
  // the dense backward's dy and y, packed as A's panels of 6 rows for dx.
  static constexpr int kTransposeBlock = 8;
  static void transpose_block(const T* src, int64_t row_stride, int rows, T* dst,
                              int64_t dst_stride, int lanes) {
    Reg r[8], t[8];
    for (int i = 0; i < 8; ++i) r[i] = i < rows ? load(src + i * row_stride) : zero();
    // Pairs of rows interleaved, then groups of four, within each 128-bit half: r[4h + j]
    // then holds rows 4h..4h+3 of column j (low half) and of column 4 + j (high half).
    for (int i = 0; i < 4; ++i) {
      t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
      t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int h = 0; h < 2; ++h) {
      r[4 * h + 0] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], _MM_SHUFFLE(1, 0, 1, 0));
      r[4 * h + 1] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], _MM_SHUFFLE(3, 2, 3, 2));
      r[4 * h + 2] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], _MM_SHUFFLE(1, 0, 1, 0));
      r[4 * h + 3] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    // Then rows 0-3 and 4-7 joined for each column.
    for (int j = 0; j < 4; ++j) {
      store_first(dst + j * dst_stride, _mm256_permute2f128_ps(r[j], r[4 + j], 0x20), lanes);
      store_first(dst + (4 + j) * dst_stride, _mm256_permute2f128_ps(r[j], r[4 + j], 0x31), lanes);
    }
  }
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
  // As Avx2Float's: a half and a single.
  static void store_first(T* p, Reg v, int n) {
    if (n >= kLanes) return store(p, v);
    __m128d part = _mm256_castpd256_pd128(v);
    if (n >= 2) {
      _mm_storeu_pd(p, part);
      part = _mm256_extractf128_pd(v, 1);
      p += 2;
      n -= 2;
    }
    if (n == 1) _mm_store_sd(p, part);
  }
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
