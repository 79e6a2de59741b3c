// The bfloat16 micro-kernel on AMX (compiled with the AVX-512 flags plus -mamx-tile
// -mamx-bf16; used only when cpu_features() reports AMX-BF16 and the OS grants this
// process the tile data state). Tiles are 32 x 32 floats, as 2 x 2 tile registers of
// 16 x 16 (tmm0-3), summed by tdpbf16ps from two A tiles of 16 rows x 32 depth
// (tmm4-5) and two B tiles of 16 depth pairs x 16 columns (tmm6-7) per 32 depth. B's
// packed micro-panel (pair-interleaved, 32 columns) is read as it is: a B tile is 16 of
// its depth-pair rows, 64 of its 128 bytes each. A tile wants each row's depth
// contiguous, so A's packed panels are turned into rows once per packed block
// (rows_from_pairs). A depth that is not a multiple of 32 ends on the vdpbf16ps
// kernel, reading those rows in place.
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>
#include <utility>

#include "gemm_avx512_vectors.h"
#include "gemm_kernels.h"

namespace fusedlayers {
namespace {

constexpr int kMr = 32, kNr = 32;
constexpr int kTileDepth = 32;  // bf16 elements of one A tile row

// The tile configuration (palette 1): eight tiles of 16 rows x 64 bytes.
struct alignas(64) TileConfig {
  uint8_t palette_id;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};

// Loaded at the start of every task: the tile configuration is per-thread state that
// other AMX users on the thread (oneDNN, in TensorFlow's pool) may have changed.
void configure_tiles() {
  TileConfig config{};
  config.palette_id = 1;
  for (int t = 0; t < 8; ++t) {
    config.colsb[t] = 64;
    config.rows[t] = 16;
  }
  // GCC 12's _tile_loadconfig tells the compiler it reads only a pointer's worth of
  // the configuration, so the stores above could be dropped: name the whole of it.
  __asm__ volatile("ldtilecfg %0" : : "m"(config));
}

// Rows [0, rows) x columns [0, cols) of a 32 x 32 tile, `kc` deep (layouts in
// gemm_kernels.h, with A's panel in rows: a(i, p) = a[i * lda + p]).
void amx_tile(int rows, int64_t kc, const bfloat16_t* a, int64_t lda, const bfloat16_t* b,
              int64_t ldb, float* c, int64_t ldc, int cols, bool accumulate) {
  const int64_t blocks = kc / kTileDepth, done = blocks * kTileDepth;
  if (blocks > 0) {
    const bool whole = rows == kMr && cols == kNr;
    alignas(64) float partial[kMr * kNr];
    float* out = whole ? c : partial;
    const int64_t ld_bytes = (whole ? ldc : kNr) * int64_t(sizeof(float));
    if (whole && accumulate) {
      _tile_loadd(0, c, ld_bytes);
      _tile_loadd(1, c + 16, ld_bytes);
      _tile_loadd(2, c + 16 * ldc, ld_bytes);
      _tile_loadd(3, c + 16 * ldc + 16, ld_bytes);
    } else {
      _tile_zero(0);
      _tile_zero(1);
      _tile_zero(2);
      _tile_zero(3);
    }
    const int64_t a_bytes = lda * int64_t(sizeof(bfloat16_t));
    const int64_t b_bytes = ldb * int64_t(sizeof(bfloat16_t));
    for (int64_t kb = 0; kb < blocks; ++kb) {
      const bfloat16_t* a_block = a + kb * kTileDepth;
      const bfloat16_t* b_block = b + kb * (kTileDepth / 2) * ldb;
      _tile_loadd(4, a_block, a_bytes);
      _tile_loadd(5, a_block + 16 * lda, a_bytes);
      _tile_loadd(6, b_block, b_bytes);
      _tile_loadd(7, b_block + 32, b_bytes);
      _tile_dpbf16ps(0, 4, 6);
      _tile_dpbf16ps(1, 4, 7);
      _tile_dpbf16ps(2, 5, 6);
      _tile_dpbf16ps(3, 5, 7);
    }
    const int64_t ld = whole ? ldc : kNr;
    _tile_stored(0, out, ld_bytes);
    _tile_stored(1, out + 16, ld_bytes);
    _tile_stored(2, out + 16 * ld, ld_bytes);
    _tile_stored(3, out + 16 * ld + 16, ld_bytes);
    if (!whole) {
      for (int i = 0; i < rows; ++i)
        for (int j = 0; j < cols; ++j)
          c[i * ldc + j] = (accumulate ? c[i * ldc + j] : 0.0f) + partial[i * kNr + j];
    }
    accumulate = true;
  }
  if (kc == done) return;
  // The last kc % 32 depth: vdpbf16ps over A's rows in place, 12 rows at a time.
  const MicroKernel<bfloat16_t>& tail = avx512_bf16_kernels().bf16;
  for (int r0 = 0; r0 < rows; r0 += tail.mr) {
    const int n = rows - r0 < tail.mr ? rows - r0 : tail.mr;
    tail.by_rows_a_in_place[n](kc - done, a + r0 * lda + done, lda, b + (done / 2) * ldb, ldb,
                               c + r0 * ldc, ldc, cols, accumulate);
  }
}

template <int ROWS>
void amx_rows(int64_t kc, const bfloat16_t* a, int64_t lda, const bfloat16_t* b, int64_t ldb,
              float* c, int64_t ldc, int cols, bool accumulate) {
  amx_tile(ROWS, kc, a, lda, b, ldb, c, ldc, cols, accumulate);
}

// Pair-interleaved A panels (words [q][r]) to rows (words [r][q]): a 32-bit transpose
// by the float packing's 16 x 16 register blocks (bits moved, never computed on).
void rows_from_pairs(const bfloat16_t* panels, int64_t rows, int64_t nd, int panel,
                     bfloat16_t* dst) {
  const int64_t words = (nd + 1) / 2;
  for (int64_t pr = 0; pr < rows; pr += panel) {
    const float* in = reinterpret_cast<const float*>(panels + pr * 2 * words);
    float* out = reinterpret_cast<float*>(dst + pr * 2 * words);
    for (int64_t q = 0; q < words; q += 16) {
      const int n = words - q < 16 ? static_cast<int>(words - q) : 16;
      for (int rb = 0; rb < panel; rb += 16)
        Avx512Float::transpose_block(in + q * panel + rb, panel, n, out + rb * words + q, words, n);
    }
  }
}

template <int... RowsMinusOne>
Bf16Kernels make_amx_kernels(std::integer_sequence<int, RowsMinusOne...>) {
  const Bf16Kernels& vnni = avx512_bf16_kernels();
  Bf16Kernels k{};
  k.name = "amx";
  k.bf16.mr = kMr;
  k.bf16.nr = kNr;
  ((k.bf16.by_rows[RowsMinusOne + 1] = &amx_rows<RowsMinusOne + 1>), ...);
  k.bf16.pack = vnni.bf16.pack;
  k.bf16.rows_from_pairs = &rows_from_pairs;
  k.bf16.prepare = &configure_tiles;
  k.pack_float_panels = vnni.pack_float_panels;
  k.round_floats = vnni.round_floats;
  return k;
}

}  // namespace

bool amx_tiles_permitted() {
  // Linux hands out the AMX tile data state only on request (arch_prctl
  // ARCH_REQ_XCOMP_PERM for XFEATURE_XTILEDATA): without it tile instructions fault.
  constexpr int kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  static const bool granted = syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
  return granted;
}

const Bf16Kernels& amx_kernels() {
  static const Bf16Kernels kernels = make_amx_kernels(std::make_integer_sequence<int, kMr>());
  return kernels;
}

}  // namespace fusedlayers
