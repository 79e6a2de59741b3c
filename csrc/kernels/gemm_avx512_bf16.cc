// The bfloat16 micro-kernel on AVX512_BF16 (compiled with the AVX-512 flags plus
// -mavx512bf16; called only when cpu_features() reports avx512_bf16). Operands are
// packed as bf16 in pair-interleaved panels (element (r, d) at [d / 2][r][d % 2]), so
// one 32-bit word holds a row's two consecutive depth elements: each depth pair is one
// vdpbf16ps per accumulator, a row's word broadcast against B's 16 words, summing
// a0 * b0 + a1 * b1 into float lanes. Tiles are 12 rows x 2 zmm as for float (24
// accumulators + 2 B vectors + 1 broadcast in the 32 zmm registers); each step covers
// two depth elements for the same loads, so the packed panels stream half the bytes.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "gemm_avx512_vectors.h"
#include "gemm_microkernel.h"

namespace fusedlayers {
namespace {

struct Avx512Bf16 : Avx512Float {
  struct Operands {
    using Elem = bfloat16_t;
    using Reg = __m512bh;
    static constexpr int kDepthGroup = 2;
    static Reg load(const Elem* p) { return (__m512bh)_mm512_loadu_si512(p); }
    static Reg broadcast(const Elem* p) {
      uint32_t pair;
      std::memcpy(&pair, p, sizeof pair);
      return (__m512bh)_mm512_set1_epi32(static_cast<int>(pair));
    }
    static Reg broadcast_first(const Elem* p) { return (__m512bh)_mm512_set1_epi32(p->bits); }
    static __m512 fma(Reg a, Reg b, __m512 c) { return _mm512_dpbf16_ps(c, a, b); }
    // B in place (micro_tile's B_ROW_PAIRS): 32 columns of a depth pair's rows `even`
    // and even + ld, interleaved word by word within each 128-bit lane. bv[0] then holds
    // the pairs of columns 0-3, 8-11, 16-19, 24-27 and bv[1] those of 4-7, 12-15, 20-23,
    // 28-31: the same pairs as a packed panel's, so the same sums, in another lane order.
    static void load_row_pairs(const Elem* even, int64_t ld, Reg* bv) {
      const __m512i e = _mm512_loadu_si512(even), o = _mm512_loadu_si512(even + ld);
      bv[0] = (__m512bh)_mm512_unpacklo_epi16(e, o);
      bv[1] = (__m512bh)_mm512_unpackhi_epi16(e, o);
    }
    // The last, odd depth step: its row, paired with zeros.
    static void load_row_pairs_first(const Elem* even, Reg* bv) {
      const __m512i e = _mm512_loadu_si512(even), zero = _mm512_setzero_si512();
      bv[0] = (__m512bh)_mm512_unpacklo_epi16(e, zero);
      bv[1] = (__m512bh)_mm512_unpackhi_epi16(e, zero);
    }
    // Accumulators summed against load_row_pairs's vectors, put in column order.
    static void columns_in_order(__m512* acc) {
      const __m512i low = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
      const __m512i high =
          _mm512_setr_epi32(8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
      const __m512 first = _mm512_permutex2var_ps(acc[0], low, acc[1]);
      acc[1] = _mm512_permutex2var_ps(acc[0], high, acc[1]);
      acc[0] = first;
    }
  };
};

__mmask16 first_lanes(int64_t n) {
  return n >= 16 ? __mmask16(0xffff) : static_cast<__mmask16>((1u << n) - 1u);
}

// Packs a bf16 matrix into pair-interleaved panels (PackStridedFn; layout in
// gemm_kernels.h), with pairs = nd / 2 rounded up and a zero completing an odd nd.
void pack_pairs(const bfloat16_t* src, int64_t row_stride, int64_t depth_stride, int64_t r0,
                int64_t nr, int64_t d0, int64_t nd, int panel, bfloat16_t* dst) {
  const int64_t pairs = (nd + 1) / 2;
  const bfloat16_t* origin = src + r0 * row_stride + d0 * depth_stride;
  if (depth_stride == 1 && row_stride % 2 == 0 && nd % 2 == 0 &&
      reinterpret_cast<uintptr_t>(origin) % 4 == 0) {
    // Each row's depth pairs are the 32-bit words of a matrix of half the depth, and
    // the pair layout is that matrix's float panel layout: the float packing's
    // register transposes move the words (bits moved, never computed on).
    isa_generic::pack_strided<Avx512Float>(reinterpret_cast<const float*>(origin), row_stride / 2,
                                           1, 0, nr, 0, pairs, panel, reinterpret_cast<float*>(dst));
    return;
  }
  const int64_t panels = (nr + panel - 1) / panel;
  if (row_stride == 1) {
    // Rows contiguous (a transposed operand): each pair of depth rows is zero-extended
    // to words and merged, 16 rows at a time.
    for (int64_t q = 0; q < pairs; ++q) {
      const uint16_t* even = &origin[2 * q * depth_stride].bits;
      const uint16_t* odd = 2 * q + 1 < nd ? even + depth_stride : nullptr;
      for (int64_t pi = 0; pi < panels; ++pi) {
        uint32_t* out = reinterpret_cast<uint32_t*>(dst + pi * panel * 2 * pairs + q * panel * 2);
        for (int64_t rr = 0; rr < panel; rr += 16) {
          const int64_t r = pi * panel + rr;
          const __mmask16 real = first_lanes(r < nr ? nr - r : 0);
          __m512i words = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(real, even + r));
          if (odd) {
            words = _mm512_or_si512(
                words, _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(real, odd + r)), 16));
          }
          _mm512_mask_storeu_epi32(out + rr, first_lanes(panel - rr), words);
        }
      }
    }
    return;
  }
  for (int64_t pi = 0; pi < panels; ++pi) {
    bfloat16_t* out = dst + pi * panel * 2 * pairs;
    for (int rr = 0; rr < panel; ++rr) {
      const int64_t r = pi * panel + rr;
      for (int64_t d = 0; d < 2 * pairs; ++d) {
        out[(d / 2) * panel * 2 + rr * 2 + d % 2] =
            r < nr && d < nd ? origin[r * row_stride + d * depth_stride] : bfloat16_t{0};
      }
    }
  }
}

// bf16 bits (round to nearest even, NaN kept quiet: bfloat16_from_float's rounding) of
// 16 floats, in the low half of each 32-bit lane.
__m512i round_to_bf16(__m512 f) {
  const __m512i u = _mm512_castps_si512(f);
  const __m512i high = _mm512_srli_epi32(u, 16);
  const __m512i bias = _mm512_add_epi32(_mm512_and_si512(high, _mm512_set1_epi32(1)),
                                        _mm512_set1_epi32(0x7fff));
  const __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(u, bias), 16);
  const __mmask16 nan = _mm512_cmp_ps_mask(f, f, _CMP_UNORD_Q);
  return _mm512_mask_mov_epi32(rounded, nan, _mm512_or_si512(high, _mm512_set1_epi32(0x40)));
}

// Float panels (depth-major, `panel` rows a step) to bf16 pair panels, 16 rows at a time.
void pack_float_panels(const float* src, int64_t rows, int64_t nd, int panel, bfloat16_t* dst) {
  const int64_t pairs = (nd + 1) / 2;
  for (int64_t pr = 0; pr < rows; pr += panel) {
    const float* in = src + pr * nd;
    uint32_t* out = reinterpret_cast<uint32_t*>(dst + pr * 2 * pairs);
    for (int64_t q = 0; q < pairs; ++q) {
      const float* even = in + 2 * q * panel;
      const bool has_odd = 2 * q + 1 < nd;
      for (int rr = 0; rr < panel; rr += 16) {
        const __mmask16 lanes = first_lanes(panel - rr);
        __m512i words = round_to_bf16(_mm512_maskz_loadu_ps(lanes, even + rr));
        if (has_odd) {
          words = _mm512_or_si512(
              words, _mm512_slli_epi32(round_to_bf16(_mm512_maskz_loadu_ps(lanes, even + panel + rr)), 16));
        }
        _mm512_mask_storeu_epi32(out + q * panel + rr, lanes, words);
      }
    }
  }
}

void round_floats(const float* src, int64_t ld_src, int64_t rows, int64_t cols, bfloat16_t* dst,
                  int64_t ld_dst) {
  for (int64_t i = 0; i < rows; ++i) {
    const float* in = src + i * ld_src;
    bfloat16_t* out = dst + i * ld_dst;
    int64_t e = 0;
    for (; e + 16 <= cols; e += 16)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + e),
                          _mm512_cvtepi32_epi16(round_to_bf16(_mm512_loadu_ps(in + e))));
    if (e < cols) {
      const __mmask16 lanes = first_lanes(cols - e);
      const __m512i bits = round_to_bf16(_mm512_maskz_loadu_ps(lanes, in + e));
      _mm256_mask_storeu_epi16(out + e, lanes, _mm512_cvtepi32_epi16(bits));
    }
  }
}

Bf16Kernels make_avx512_bf16_kernels() {
  Bf16Kernels k{};
  k.name = "dpbf16";
  k.bf16 = isa_generic::make_micro_kernel<Avx512Bf16, 12, 2>();
  k.bf16.pack = &pack_pairs;
  k.pack_float_panels = &pack_float_panels;
  k.round_floats = &round_floats;
  return k;
}

}  // namespace

const Bf16Kernels& avx512_bf16_kernels() {
  static const Bf16Kernels kernels = make_avx512_bf16_kernels();
  return kernels;
}

}  // namespace fusedlayers
