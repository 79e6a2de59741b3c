// The AVX-512 float vector traits (see gemm_microkernel.h) shared by the AVX-512
// translation units (gemm_avx512.cc, gemm_avx512_bf16.cc): include it only from files
// compiled with AVX-512 flags. Internal linkage on purpose: each of those files keeps
// its own copy, so no copy built with one file's extra flags can serve the other.
#pragma once

#include <immintrin.h>

#include <cstdint>

namespace fusedlayers {
namespace {

struct Avx512Float {
  using T = float;
  using Reg = __m512;
  static constexpr int kLanes = 16;
  static Reg zero() { return _mm512_setzero_ps(); }
  static Reg load(const T* p) { return _mm512_loadu_ps(p); }
  static Reg broadcast(const T* p) { return _mm512_set1_ps(*p); }
  static Reg fma(Reg a, Reg b, Reg c) { return _mm512_fmadd_ps(a, b, c); }
  static Reg add(Reg a, Reg b) { return _mm512_add_ps(a, b); }
  static void store(T* p, Reg v) { _mm512_storeu_ps(p, v); }
  static __mmask16 first(int n) { return static_cast<__mmask16>((1u << n) - 1u); }
  static Reg load_first(const T* p, int n) { return _mm512_maskz_loadu_ps(first(n), p); }
  static void store_first(T* p, Reg v, int n) { _mm512_mask_storeu_ps(p, first(n), v); }
  // A store past the caches, p aligned to the vector; stream_fence() orders them.
  static void stream(T* p, Reg v) { _mm512_stream_ps(p, v); }
  static void stream_fence() { _mm_sfence(); }

  // Packing hook (see pack_strided): reads `rows` (<= 16) rows of 16 contiguous
  // elements, src + r * row_stride, and writes their transpose: 16 rows of `lanes`
  // elements at dst + c * dst_stride, lanes past `rows` as zeros. 64 shuffles per
  // 16 x 16 block instead of 256 scalar loads and stores.
  static constexpr int kTransposeBlock = 16;
  static void transpose_block(const T* src, int64_t row_stride, int rows, T* dst,
                              int64_t dst_stride, int lanes) {
    Reg r[16], t[16];
    for (int i = 0; i < 16; ++i) r[i] = i < rows ? load(src + i * row_stride) : zero();
    // Within each 128-bit lane: pairs of rows interleaved, then groups of four rows,
    // leaving t[4g + j] lane L = rows 4g..4g+3 at column 4L + j.
    for (int i = 0; i < 8; ++i) {
      t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
      t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int g = 0; g < 4; ++g) {
      r[4 * g + 0] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], _MM_SHUFFLE(1, 0, 1, 0));
      r[4 * g + 1] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], _MM_SHUFFLE(3, 2, 3, 2));
      r[4 * g + 2] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], _MM_SHUFFLE(1, 0, 1, 0));
      r[4 * g + 3] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    // Then a 4 x 4 transpose of 128-bit lanes for each j.
    const __mmask16 mask = first(lanes);
    for (int j = 0; j < 4; ++j) {
      const Reg v0 = _mm512_shuffle_f32x4(r[j], r[4 + j], 0x44);
      const Reg v1 = _mm512_shuffle_f32x4(r[j], r[4 + j], 0xEE);
      const Reg v2 = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0x44);
      const Reg v3 = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0xEE);
      _mm512_mask_storeu_ps(dst + (0 + j) * dst_stride, mask, _mm512_shuffle_f32x4(v0, v2, 0x88));
      _mm512_mask_storeu_ps(dst + (4 + j) * dst_stride, mask, _mm512_shuffle_f32x4(v0, v2, 0xDD));
      _mm512_mask_storeu_ps(dst + (8 + j) * dst_stride, mask, _mm512_shuffle_f32x4(v1, v3, 0x88));
      _mm512_mask_storeu_ps(dst + (12 + j) * dst_stride, mask, _mm512_shuffle_f32x4(v1, v3, 0xDD));
    }
  }
};

}  // namespace
}  // namespace fusedlayers
