// The GEMM engine: BLIS's loops around a per-ISA register-tile micro-kernel.
//
//   task (a rectangle of C; one per thread)
//     jc: columns in steps of nc      B block (kc x nc) packed per depth step
//       pc: depth in steps of kc
//         ic: rows in steps of mc     A block (mc x kc) packed, stays in L2
//           jr: columns in steps of nr    B micro-panel (kc x nr) stays in L1
//             ir: rows in steps of mr     micro-kernel; on the last pc, epilogue
//
// Block sizes come from the cache sizes found at run time; the micro-kernel and the
// vectorized packing loops come from the ISA translation unit picked from cpuid.
#include "gemm.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "cpu_features.h"
#include "gemm_kernels.h"

namespace fusedlayers {

const IsaKernels& active_kernels() {
  static const IsaKernels& chosen = [&]() -> const IsaKernels& {
    const CpuFeatures& f = cpu_features();
    const bool has_avx512 = f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq && f.fma;
    const bool has_avx2 = f.avx2 && f.fma;
    // The highest ISA allowed: 2 avx512, 1 avx2, 0 portable.
    int allowed = 2;
    if (const char* forced = std::getenv("FUSEDLAYERS_ISA")) {
      const std::string name = forced;
      if (name == "avx2") {
        allowed = 1;
      } else if (name == "portable") {
        allowed = 0;
      } else if (!name.empty() && name != "avx512") {
        std::fprintf(stderr,
                     "fusedlayers: FUSEDLAYERS_ISA must be one of avx512, avx2, portable; got "
                     "'%s', using the best the CPU has\n",
                     forced);
      }
    }
    if (has_avx512 && allowed >= 2) return avx512_kernels();
    if (has_avx2 && allowed >= 1) return avx2_kernels();
    return portable_kernels();
  }();
  return chosen;
}

const char* gemm_kernel_isa() { return active_kernels().isa; }

namespace {

// FUSEDLAYERS_BF16_KERNEL as set at first use ("" when unset).
const std::string& forced_bf16_kernel() {
  static const std::string name = [] {
    const char* forced = std::getenv("FUSEDLAYERS_BF16_KERNEL");
    return std::string(forced ? forced : "");
  }();
  return name;
}

}  // namespace

const Bf16Kernels* active_bf16_kernels() {
  static const Bf16Kernels* chosen = []() -> const Bf16Kernels* {
    const CpuFeatures& f = cpu_features();
    const bool has_dpbf16 = f.avx512_bf16 && std::string(active_kernels().isa) == "avx512";
    const std::string& name = forced_bf16_kernel();
    if (name == "widen") return nullptr;
    if (!name.empty() && name != "dpbf16" && name != "amx") {
      std::fprintf(stderr,
                   "fusedlayers: FUSEDLAYERS_BF16_KERNEL must be amx, dpbf16 or widen; got '%s', "
                   "using the best the CPU has\n",
                   name.c_str());
    }
    // AMX only where the OS grants the tile state (asked for only when it may be used).
    const bool amx_allowed = name != "dpbf16";
    const bool has_amx = has_dpbf16 && amx_allowed && f.amx_bf16 && f.amx_tile && amx_tiles_permitted();
    if ((name == "amx" && !has_amx) || (name == "dpbf16" && !has_dpbf16)) {
      std::fprintf(stderr,
                   "fusedlayers: FUSEDLAYERS_BF16_KERNEL=%s is not available here (amx needs "
                   "AMX-BF16 and the OS's tile state, dpbf16 AVX512_BF16, both the avx512 ISA); "
                   "using %s\n",
                   name.c_str(), has_amx ? "amx" : has_dpbf16 ? "dpbf16" : "widen (bfloat16 widened to float)");
    }
    if (has_amx) return &amx_kernels();
    return has_dpbf16 ? &avx512_bf16_kernels() : nullptr;
  }();
  return chosen;
}

template <>
const MicroKernel<float>& micro_kernel<float>() {
  return active_kernels().f32;
}
template <>
const MicroKernel<double>& micro_kernel<double>() {
  return active_kernels().f64;
}
template <>
const MicroKernel<bfloat16_t>& micro_kernel<bfloat16_t>() {
  const Bf16Kernels* k = active_bf16_kernels();
  if (!k) {
    std::fprintf(stderr, "fusedlayers: bfloat16 gemm called without a bf16 kernel\n");
    std::abort();
  }
  return k->bf16;
}

const char* gemm_bf16_kernel() {
  const Bf16Kernels* k = active_bf16_kernels();
  return k ? k->name : "widen";
}

// With vdpbf16ps, how fast it runs decides the shapes that take it, read from the vendor
// (a rule from cpuid, not a timing, so that the kernel and with it the bits never change
// between runs). Intel (Sapphire Rapids, no AMX granted): vdpbf16ps does 0.69x the FMA's
// flops, so only products with at most kPairsMaxReuse rows of A per element of B run on
// pairs, where packing the weights dominates (dense 1-32 x 1024 x 1024, bf16 forward:
// 0.36-0.52x stock widened, 0.63-0.71x on pairs; at 256 and 4096 rows widened is faster).
// AMD (Zen 4 and later, the only AMD cores with AVX512_BF16): a 512-bit vdpbf16ps issues
// at the FMA's rate with twice its flops, so every shape runs on pairs (gemm_bf16
// 1024 x 2048 x 2048, one thread: 178-188 GFLOP/s on pairs, 91 widened). AMX is faster
// than widening at every shape measured. See docs/performance.md.
constexpr int64_t kPairsMaxReuse = 64;

bool gemm_packs_bf16(int64_t reuse) {
  const Bf16Kernels* k = active_bf16_kernels();
  if (!k) return false;
  // Decided once, as the kernel is: AMX, dpbf16 forced, or AMD's fast vdpbf16ps.
  static const bool every_shape = forced_bf16_kernel() == "dpbf16" ||
                                  std::strcmp(k->name, "amx") == 0 ||
                                  cpu_features().vendor == "AuthenticAMD";
  return every_shape || reuse <= kPairsMaxReuse;
}

void pack_float_panels_as_bf16(const float* src, int64_t rows, int64_t nd, int panel,
                               bfloat16_t* dst) {
  active_bf16_kernels()->pack_float_panels(src, rows, nd, panel, dst);
}

void round_float_rows_to_bf16(const float* src, int64_t ld_src, int64_t rows, int64_t cols,
                              bfloat16_t* dst, int64_t ld_dst) {
  if (const Bf16Kernels* k = active_bf16_kernels()) {
    k->round_floats(src, ld_src, rows, cols, dst, ld_dst);
    return;
  }
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) dst[i * ld_dst + j] = bfloat16_from_float(src[i * ld_src + j]);
}

int64_t fma_peak_flops(double seconds) {
  constexpr int64_t kStepsPerCheck = 1 << 16;
  const auto start = std::chrono::steady_clock::now();
  int64_t flops = 0;
  do {
    flops += active_kernels().fma_chains(kStepsPerCheck);
  } while (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() <
           seconds);
  return flops;
}

namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }
int64_t round_down(int64_t a, int64_t b) { return a / b * b; }

struct Blocking {
  int64_t mc = 0, nc = 0, kc = 0;
};

// kc: the depth of a pass over C. Each pass reads and writes the C tile once (from
// memory when C is large, its rows a page apart on the same cache sets), so kc is large:
// B's micro-panel (kc x nr) twice L1, streaming from L2 with the kernel's prefetches,
// capped at 512. Measured: on a 48 KB-L1 Xeon kc 512 beat 384 by 5-10% and 192 by 20% at
// 1024 x 4096 x 2048; on a 32 KB-L1 Zen 4 core, 512 against 336 (B's panel a third
// larger than L1, the earlier rule) took the engine from 0.94x to 1.00x oneDNN's
// tf.matmul time at 1024 x 2048 x 2048 on one thread, and from 0.96x to 0.99x at
// 1024 x 4096 x 4096 on two (docs/performance.md). bf16 pairs keep B's panel a third
// larger than L1: on Zen 4, kc 1024 instead of 672 took 32 x 4096 x 4096 on vdpbf16ps from
// 121-139 to 84-114 GFLOP/s (one thread) and left 1024 x 2048 x 2048 unchanged.
// mc: A's block (mc x kc) stays in L2 while every B micro-panel meets it; half of L2.
// nc: B's block (kc x nc) is read from L2/L3 once per A block, so it is large, which
// makes A's packing rare (once per nc columns). Sizes are in packed elements (In):
// bf16 panels hold twice the depth of float ones in the same bytes, so kc's cap is
// twice as deep for them (the C tile's traffic is then paid over as many bytes of B).
template <typename In>
Blocking cache_blocking(const MicroKernel<In>& mk) {
  const CpuFeatures& f = cpu_features();
  const int64_t l1 = f.l1d_bytes > 0 ? f.l1d_bytes : 32 * 1024;
  const int64_t l2 = f.l2_bytes > 0 ? f.l2_bytes : 256 * 1024;
  const int64_t kc_cap = sizeof(In) < 4 ? 1024 : 512;
  Blocking b;
  const int64_t b_panel_bytes = sizeof(In) < 4 ? l1 * 4 / 3 : l1 * 2;
  b.kc = std::clamp<int64_t>(round_down(b_panel_bytes / (mk.nr * int64_t(sizeof(In))), 16), 64, kc_cap);
  b.mc = std::clamp<int64_t>(round_down(l2 / 2 / (b.kc * int64_t(sizeof(In))), mk.mr), mk.mr,
                             round_down(1024, mk.mr));
  b.nc = round_down(4096, mk.nr);
  return b;
}

template <typename In>
struct Engine {
  const MicroKernel<In>& mk;
  Blocking blocking;
};

template <typename In>
const Engine<In>& engine() {
  static const Engine<In> e{micro_kernel<In>(), cache_blocking(micro_kernel<In>())};
  return e;
}

// The depth step of a product k deep: the depth cut into equal steps (of whole depth
// groups) of at most blocking.kc.
template <typename In>
int64_t depth_step(int64_t k) {
  const int64_t depth_steps = ceil_div(std::max<int64_t>(k, 1), engine<In>().blocking.kc);
  return round_up(ceil_div(std::max<int64_t>(k, 1), depth_steps), kDepthGroup<In>);
}

// Where B's panels for depth step pc, columns from jc (a multiple of nr), start in a
// pack_b_once buffer: the earlier steps, each kc deep for all of B's panels, then the
// panels before jc, kc_packed deep.
template <typename In>
int64_t packed_b_offset(int64_t n, int64_t nr, int64_t pc, int64_t jc, int64_t kc_packed) {
  return pc * ceil_div(n, nr) * nr + (jc / nr) * kc_packed * nr;
}

// A 64-byte-aligned buffer that only grows: per-thread packing and C scratch, so
// the hot path allocates nothing once a thread has seen its largest problem.
template <typename T>
class ScratchBuffer {
 public:
  T* get(int64_t count) {
    if (count > capacity_) {
      const size_t bytes = round_up(std::max<int64_t>(count, 1) * int64_t(sizeof(T)), 64);
      data_.reset(static_cast<T*>(std::aligned_alloc(64, bytes)));
      if (!data_) throw std::bad_alloc();
      capacity_ = count;
    }
    return data_.get();
  }

 private:
  struct Free {
    void operator()(T* p) const { std::free(p); }
  };
  std::unique_ptr<T, Free> data_;
  int64_t capacity_ = 0;
};

template <typename In>
struct ThreadScratch {
  ScratchBuffer<In> packed_a, packed_b;
  ScratchBuffer<In> a_rows;  // packed_a as rows, for kernels with rows_from_pairs
  ScratchBuffer<acc_t<In>> c;
  ScratchBuffer<acc_t<In>> tile;  // one micro-tile of C (see GemmCall::run_task)
  ScratchBuffer<acc_t<In>> parked;  // raw sums of a column of tiles (see kParkedDepthStep)
};

template <typename In>
ThreadScratch<In>& thread_scratch() {
  thread_local ThreadScratch<In> scratch;
  return scratch;
}

// Work below this many flops per task costs less than handing it to another thread:
// a pool thread asleep between calls (in tf.function the Python side spends ~0.15 ms
// per call) takes tens of microseconds to wake. Measured in tf.function against stock
// on 2 cores: one thread wins up to 25 MFLOP (256x100x100 relu 0.87x -> 1.00x of
// stock, 32x784x256 0.91x -> 1.04x, 128x256x256 0.87x -> 0.96x).
constexpr int64_t kMinFlopsPerTask = int64_t(1) << 24;
// A B read in place by register tiles, with rows of kParkedRowBytes or more (each row of
// B on its own pages), is walked this many depth steps at a time for every tile of rows,
// their sums parked between steps (MicroKernel::parked_by_rows): the 64 rows of B a part
// reads stay within the L1 TLB and L1 for all the tiles of rows, where a depth step of
// kc = 512 rows left both before the next tile of rows read them again. The sums' depth
// stays kc, so the results are the same bits as packed B's. Dense forward, eager, two
// threads: 32 x 4096 -> 4096 6.5 -> 5.3-5.5 ms, 64 x 4096 -> 4096 11.2-12.0 -> 9.4-9.9
// ms; rows of 4 KiB lose a little (64 x 1024 -> 1024 0.70-0.73 -> 0.76-0.78 ms).
// Each part also fetches its rows of the next column of B into L2 (fetch_rows): each row
// on its own pages, the hardware prefetchers do not follow them, and where only one tile
// of rows reads each line, the micro-kernel's fetch 16 rows ahead left the trip from
// DRAM exposed. With it a single tile of rows is parked too: dense forward in
// tf.function, two threads, alternating in one process, before -> after: 5 x 4096 ->
// 4096 6.3 -> 4.7 ms, 8 rows 6.0 -> 5.0 ms, 12 rows 5.7 -> 5.2 ms, 8 x 2048 -> 2048 1.60
// -> 1.40 ms; 16 to 64 rows within the noise (±5%). A B not aligned to 64 bytes (a
// numpy array: 128 bytes a row span three lines) gains most: native harness, 32 x 4096
// -> 4096 14.4 -> 10.1 ms. Rows of 4 KiB still lose parked (W of 4 MiB stays in L3:
// 32 x 1024 -> 1024 0.60 -> 0.62 ms).
constexpr int64_t kParkedDepthStep = 64;
constexpr int64_t kParkedRowBytes = 8192;

// Brings `rows` rows of `cols` elements, `ld` apart, toward L2 (prefetcht1).
template <typename In>
void fetch_rows(const In* data, int64_t rows, int64_t cols, int64_t ld) {
  constexpr int64_t kLine = 64 / int64_t(sizeof(In));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t e = 0; e < cols; e += kLine) __builtin_prefetch(data + r * ld + e, 0, 2);
}

// Packing one element costs about as much as this many flops of the micro-kernel.
constexpr int64_t kPackCostFlops = 16;
// Without a caller accumulator, a task keeps rows x nc of C in scratch: bound it.
constexpr int64_t kMaxScratchElements = int64_t(1) << 20;

// Tasks are a tm x tn grid of C rectangles, whole micro-tiles each.
struct Partition {
  int64_t rows_per_task = 0, cols_per_task = 0;
  int64_t tm = 0, tn = 0;
};

// How many tasks an m x n x k product has work for (kMinFlopsPerTask each), before
// the thread count caps it.
int64_t tasks_worth(int64_t m, int64_t n, int64_t k) {
  return 2 * m * n * std::max<int64_t>(k, 1) / kMinFlopsPerTask;
}

// Picks the grid that minimises one task's work (flops including padding, plus
// packing) with at most one task per thread, and no more tasks than the problem's
// size can feed: small M splits N, small N splits M.
template <typename In>
Partition partition(int64_t m, int64_t n, int64_t k, int threads, const Engine<In>& e,
                    bool scratch_c) {
  const int64_t mr = e.mk.mr, nr = e.mk.nr, nc = e.blocking.nc;
  const int64_t m_units = ceil_div(m, mr), n_units = ceil_div(n, nr);
  const int64_t depth = std::max<int64_t>(k, 1);
  const int64_t max_tasks = std::clamp<int64_t>(
      std::min<int64_t>(threads, tasks_worth(m, n, k)), 1, m_units * n_units);
  Partition best;
  int64_t best_cost = -1;
  for (int64_t tm = 1; tm <= std::min(max_tasks, m_units); ++tm) {
    const int64_t tn = std::min(max_tasks / tm, n_units);
    const int64_t rows = ceil_div(m_units, tm) * mr, cols = ceil_div(n_units, tn) * nr;
    const int64_t cost =
        2 * rows * cols * depth + kPackCostFlops * (rows * depth * ceil_div(cols, nc) + cols * depth);
    if (best_cost < 0 || cost < best_cost) {
      best_cost = cost;
      best.rows_per_task = rows;
      best.cols_per_task = cols;
    }
  }
  if (scratch_c) {
    const int64_t max_rows = std::max(mr, round_down(kMaxScratchElements / nr, mr));
    best.rows_per_task = std::min(best.rows_per_task, max_rows);
  }
  best.tm = ceil_div(m, best.rows_per_task);
  best.tn = ceil_div(n, best.cols_per_task);
  return best;
}

}  // namespace

bool gemm_fits_one_task(int64_t m, int64_t n, int64_t k) {
  return tasks_worth(m, n, k) < 2;
}

namespace {

template <typename In>
void pack_source(const PackSource<In>& src, const MicroKernel<In>& mk, int64_t r0, int64_t nr,
                 int64_t d0, int64_t nd, int panel, In* dst) {
  if (src.data) {
    mk.pack(src.data, src.row_stride, src.depth_stride, r0, nr, d0, nd, panel, dst);
  } else {
    src.pack(r0, nr, d0, nd, panel, dst);
  }
}

// One gemm call: everything a task needs, shared read-only by all tasks.
template <typename In>
struct GemmCall {
  using Acc = acc_t<In>;
  static constexpr int G = kDepthGroup<In>;
  const PackSource<In>& a;
  const PackSource<In>& b;
  const TileEpilogue<Acc>& epilogue;
  GemmAccumulator<Acc> accumulator;
  const Engine<In>& e;
  Partition part;
  int64_t m, n, k;
  int64_t kc;  // depth step: the depth split into equal steps (of whole depth groups) of at most blocking.kc
  bool b_in_place;  // see reads_b_in_place
  bool b_strips;    // see reads_b_in_strips
  bool b_parked;    // see reads_b_parked
  bool a_in_place;  // see reads_a_in_place

  // A column of full-width tiles (rows [i0, i0 + mi), nr columns from j0) over depth
  // [pc, pc + kc_cur) with B read in place, kParkedDepthStep steps at a time for all its
  // tiles; then C = sums (first depth step) or C + sums, and the epilogue. `b_next`: the
  // column of B read next (ldb apart too, `next_depth` rows), fetched a part at a time.
  void run_parked_column(int64_t i0, int64_t mi, int64_t j0, int64_t pc, int64_t kc_cur,
                         int64_t kc_packed, const In* a_panels, const In* b_panel, int64_t ldb,
                         const In* b_next, int64_t next_depth, bool last,
                         ScratchBuffer<Acc>& parked_buffer, Acc* c, int64_t ldc) const {
    const MicroKernel<In>& mk = e.mk;
    const int64_t mr = mk.mr, nr = mk.nr;
    const MicroTileFn<In>* tiles = a_in_place ? mk.parked_by_rows_a_in_place : mk.parked_by_rows;
    Acc* parked = parked_buffer.get(round_up(mi, mr) * nr);
    for (int64_t p0 = 0; p0 < kc_cur; p0 += kParkedDepthStep) {
      const int64_t depth = std::min(kParkedDepthStep, kc_cur - p0);
      if (b_next && p0 < next_depth)
        fetch_rows(b_next + p0 * ldb, std::min(depth, next_depth - p0), nr, ldb);
      for (int64_t ir = 0; ir < mi; ir += mr) {
        const int rows = static_cast<int>(std::min(mr, mi - ir));
        const In* a_part = a_in_place ? a.data + (i0 + ir) * a.row_stride + pc + p0
                                      : a_panels + ir * kc_packed + p0 * mr;
        tiles[rows](depth, a_part, a_in_place ? a.row_stride : kc_packed, b_panel + p0 * ldb, ldb,
                    parked + ir * nr, nr, static_cast<int>(nr), p0 > 0);
      }
    }
    for (int64_t ir = 0; ir < mi; ir += mr) {
      const int64_t rows = std::min(mr, mi - ir);
      Acc* c_tile = c + ir * ldc;
      for (int64_t i = 0; i < rows; ++i) {
        const Acc* sums = parked + (ir + i) * nr;
        Acc* out = c_tile + i * ldc;
        for (int64_t j = 0; j < nr; ++j) out[j] = pc > 0 ? out[j] + sums[j] : sums[j];
      }
      if (last && epilogue) epilogue(i0 + ir, rows, j0, nr, c_tile, ldc);
    }
  }

  void run_task(int64_t task) const {
    const int64_t i_begin = (task / part.tn) * part.rows_per_task;
    const int64_t j_begin = (task % part.tn) * part.cols_per_task;
    const int64_t i_end = std::min(m, i_begin + part.rows_per_task);
    const int64_t j_end = std::min(n, j_begin + part.cols_per_task);
    const MicroKernel<In>& mk = e.mk;
    const int64_t mr = mk.mr, nr = mk.nr;
    ThreadScratch<In>& s = thread_scratch<In>();

    // Without the caller's accumulator, C is kept in scratch between depth steps. With
    // one depth step, each micro-tile is final as it leaves the registers, so one tile of
    // scratch, reused by every tile and never leaving L1, is enough: a rectangle of C
    // scratch would be written back to memory as it is swept (bf16 dW of a batch of 32,
    // [xᵀ; 1]·dz, in tf.function on two threads: 4097 x 32 x 4096, 64 MiB of float sums,
    // 10.2 -> 8.8 ms; 1025 x 32 x 1024 0.95 -> 0.68 ms).
    // Strips and parked columns sum wider rectangles; they keep the rectangle.
    const bool tile_c = !accumulator.c && k > 0 && k <= kc && !b_strips && !b_parked;
    const int64_t tile_ldc = round_up(nr, 16);
    Acc* const c_single_tile = tile_c ? s.tile.get(mr * tile_ldc) : nullptr;
    const int64_t nc = accumulator.c || tile_c
                           ? e.blocking.nc
                           : std::clamp(round_down(kMaxScratchElements / (i_end - i_begin), nr),
                                        nr, e.blocking.nc);
    // Row blocks of at most blocking.mc rows, the task's rows split evenly among them: a
    // small last block (256 rows: 252 + 4) streams all of B's packed block again for one
    // tile of rows (132 + 124 instead: dense forward 256 x 4096 -> 4096 in tf.function,
    // two threads, 2-3% faster in two runs alternating in one process; the sums do not
    // depend on row blocks).
    const int64_t row_blocks = std::max<int64_t>(1, ceil_div(i_end - i_begin, e.blocking.mc));
    const int64_t mc = round_up(ceil_div(i_end - i_begin, row_blocks), mr);
    const int64_t kc_max = round_up(std::max<int64_t>(std::min(kc, k), 1), G);
    const int64_t a_count = round_up(std::min(mc, i_end - i_begin), mr) * kc_max;
    In* packed_a = s.packed_a.get(a_count);
    In* packed_b = s.packed_b.get(round_up(std::min(nc, j_end - j_begin), nr) * kc_max);
    // The A panels the micro-kernel reads: as packed, or turned into rows.
    In* a_panels = mk.rows_from_pairs ? s.a_rows.get(a_count) : packed_a;
    if (mk.prepare) mk.prepare();

    for (int64_t jc = j_begin; jc < j_end; jc += nc) {
      const int64_t nc_cur = std::min(nc, j_end - jc);
      // C for rows [i_begin, i_end) x columns [jc, jc + nc_cur): the caller's
      // accumulator, or per-thread scratch holding just this rectangle.
      Acc* c_base = accumulator.c;
      int64_t ldc = accumulator.ldc, row0 = 0, col0 = 0;
      if (!c_base && !tile_c) {
        ldc = round_up(nc_cur, 16);
        c_base = s.c.get((i_end - i_begin) * ldc);
        row0 = i_begin;
        col0 = jc;
      }
      auto c_at = [&](int64_t i, int64_t j) { return c_base + (i - row0) * ldc + (j - col0); };

      if (k == 0) {
        for (int64_t i = i_begin; i < i_end; ++i) std::fill(c_at(i, jc), c_at(i, jc) + nc_cur, Acc(0));
        if (epilogue) {
          for (int64_t jr = 0; jr < nc_cur; jr += nr)
            for (int64_t i = i_begin; i < i_end; i += mr)
              epilogue(i, std::min(mr, i_end - i), jc + jr, std::min(nr, nc_cur - jr),
                       c_at(i, jc + jr), ldc);
        }
        continue;
      }

      for (int64_t pc = 0; pc < k; pc += kc) {
        const int64_t kc_cur = std::min(kc, k - pc);
        const int64_t kc_packed = round_up(kc_cur, G);  // a packed panel's depth, padded
        const bool last = pc + kc_cur >= k;
        // B read in place: only a last, partial micro-panel is packed. B packed once:
        // its panels for this block.
        const int64_t in_place_cols = b_in_place ? round_down(nc_cur, nr) : 0;
        const In* b_panels = packed_b;
        if (b.packed) {
          b_panels = b.packed + packed_b_offset<In>(n, nr, pc, jc, kc_packed);
        } else if (in_place_cols < nc_cur) {
          pack_source(b, mk, jc + in_place_cols, nc_cur - in_place_cols, pc, kc_cur,
                      static_cast<int>(nr), packed_b);
        }
        for (int64_t ic = i_begin; ic < i_end; ic += mc) {
          const int64_t mc_cur = std::min(mc, i_end - ic);
          if (!a_in_place) {
            pack_source(a, mk, ic, mc_cur, pc, kc_cur, static_cast<int>(mr), packed_a);
            if (mk.rows_from_pairs)
              mk.rows_from_pairs(packed_a, round_up(mc_cur, mr), kc_cur, static_cast<int>(mr), a_panels);
          }
          for (int64_t jr = 0; jr < nc_cur; jr += nr) {
            if (b_strips && jr < in_place_cols) {
              const int rows = static_cast<int>(mc_cur);
              const int64_t wide = std::min(round_down(mk.strip_elements / rows, nr), in_place_cols - jr);
              Acc* c_tile = c_at(ic, jc + jr);
              mk.strip_by_rows[rows](kc_cur, a_panels, kc_packed, b.data + jc + jr + pc * b.depth_stride,
                                     b.depth_stride, c_tile, ldc, static_cast<int>(wide), pc > 0);
              if (last && epilogue) {
                for (int64_t j = 0; j < wide; j += nr) epilogue(ic, rows, jc + jr + j, nr, c_tile + j, ldc);
              }
              jr += wide - nr;
              continue;
            }
            const int cols = static_cast<int>(std::min(nr, nc_cur - jr));
            const bool in_place = jr < in_place_cols;
            const In* b_panel = in_place ? b.data + jc + jr + pc * b.depth_stride
                                         : b_panels + (jr - in_place_cols) * kc_packed;
            const int64_t ldb = in_place ? b.depth_stride : nr * G;
            const bool narrow = cols <= mk.narrow_nr;
            const MicroTileFn<In>* tiles = a_in_place ? (narrow ? mk.narrow_by_rows_a_in_place
                                                                : mk.by_rows_a_in_place)
                                                      : (narrow ? mk.narrow_by_rows : mk.by_rows);
            if (G > 1 && in_place) {  // pairs interleaved from B's rows in registers
              tiles = a_in_place ? mk.row_pairs_by_rows_a_in_place : mk.row_pairs_by_rows;
            }
            if (in_place && b_parked && kc_cur > kParkedDepthStep) {
              // The column after this one: the next nr columns, or the first of the
              // next depth block (the loops above go jr, then ic, then pc).
              const In* b_next = nullptr;
              int64_t next_depth = kc_cur;
              if (jr + nr < in_place_cols) {
                b_next = b_panel + nr;
              } else if (ic + mc >= i_end && pc + kc < k) {
                b_next = b.data + jc + (pc + kc) * b.depth_stride;
                next_depth = std::min(kc, k - pc - kc);
              }
              run_parked_column(ic, mc_cur, jc + jr, pc, kc_cur, kc_packed, a_panels, b_panel,
                                ldb, b_next, next_depth, last, s.parked, c_at(ic, jc + jr), ldc);
              continue;
            }
            for (int64_t ir = 0; ir < mc_cur; ir += mr) {
              const int rows = static_cast<int>(std::min(mr, mc_cur - ir));
              Acc* c_tile = tile_c ? c_single_tile : c_at(ic + ir, jc + jr);
              const int64_t ldc_tile = tile_c ? tile_ldc : ldc;
              if (a_in_place) {
                tiles[rows](kc_cur, a.data + (ic + ir) * a.row_stride + pc, a.row_stride, b_panel,
                            ldb, c_tile, ldc_tile, cols, pc > 0);
              } else {
                tiles[rows](kc_cur, a_panels + ir * kc_packed, kc_packed, b_panel, ldb, c_tile,
                            ldc_tile, cols, pc > 0);
              }
              // The micro-tile is final and still in L1: finish it now.
              if (last && epilogue) epilogue(ic + ir, rows, jc + jr, cols, c_tile, ldc_tile);
            }
          }
        }
      }
    }
  }
};

// Packing B costs about kPackCostFlops flops an element, repaid only by the rows of C
// that reuse the packed panels; with few rows (a dense layer's small batch), the
// micro-kernel reads a plain B whose rows are contiguous in place instead (measured at
// 32 x 512 x 512: packing W took more time than the micro-kernel). Pair-interleaved
// types (bf16) read it in place where the kernel interleaves a depth pair's two rows in
// registers (MicroKernel::row_pairs_by_rows); the others pack it.
constexpr int64_t kInPlaceBMaxRows = 64;
// A tile whose depth step reads a single cache line of B's row (AVX2's 16 floats or 8
// doubles; AVX-512's tiles read two) comes back to each row's page for every 64 bytes:
// in place, it loses to packed panels from a few tiles of rows on. Zen 3, dense forward
// in tf.function, two threads, alternating in one process, in place -> packed: x 4096 ->
// 4096 at 8 rows 8.7 -> 8.6 ms, 16 rows 11.6 -> 11.4, 20 rows 13.7 -> 12.0, 32 rows 17.8
// -> 13.6, 64 rows 45 -> 23 ms; 32 x 1024 -> 1024 1.49 -> 1.45 ms, but 16 x 1024 -> 1024
// 1.14 -> 1.21 ms. (On Zen 4's AVX-512 tiles in place won up to 64 rows.)
constexpr int64_t kInPlaceBMaxRowsOneLine = 16;

// Whether a tile reads a single 64-byte line of B's rows per depth group (nr elements
// of G rows): the AVX2 tiles, which the *OneLine limits govern.
template <typename In>
bool tiles_read_one_line() {
  return engine<In>().mk.nr * kDepthGroup<In> * int64_t(sizeof(In)) <= 64;
}

template <typename In>
bool reads_b_in_place(const PackSource<In>& b, int64_t m) {
  const bool kernel_reads_rows =
      kDepthGroup<In> == 1 || engine<In>().mk.row_pairs_by_rows[1] != nullptr;
  const int64_t max_rows = tiles_read_one_line<In>() ? kInPlaceBMaxRowsOneLine : kInPlaceBMaxRows;
  return kernel_reads_rows && b.data && !b.packed && b.row_stride == 1 && m <= max_rows;
}

// Likewise with few columns: a plain A whose rows are contiguous in depth is
// broadcast from in place, each of its elements being used only once per nr columns
// (for bf16, each pair of them: the row's depth pairs are already side by side).
// The AVX2 tiles (see kInPlaceBMaxRowsOneLine) pay for packing A over more columns:
// Zen 3, dense forward in tf.function, two threads, alternating in one process, packed
// -> in place: 4096 x 100 -> 100 1.61 -> 1.48 ms, 256 x 784 -> 256 1.88 -> 1.55 ms,
// 4096 x 784 -> 256 1.01-1.08x faster in two runs; 512 columns within 2%, 1024 columns
// 2-4% slower.
constexpr int64_t kInPlaceAMaxColsOneLine = 256;

template <typename In>
bool reads_a_in_place(const PackSource<In>& a, int64_t n) {
  const int64_t max_cols = tiles_read_one_line<In>() ? kInPlaceAMaxColsOneLine : kInPlaceBMaxRows;
  return a.data && a.depth_stride == 1 && n <= max_cols &&
         engine<In>().mk.by_rows_a_in_place[1] != nullptr;
}

// B read in place by strips (MicroKernel::strip_by_rows) rather than register tiles: a C
// of at most kMaxStripRows rows whose A is packed (a strip reads A's packed panel; A read
// in place, with few columns, is not in it).
template <typename In>
bool reads_b_in_strips(const PackSource<In>& a, const PackSource<In>& b, int64_t m, int64_t n) {
  return reads_b_in_place(b, m) && m <= kMaxStripRows && engine<In>().mk.strip_by_rows[m] &&
         !reads_a_in_place(a, n);
}

// B read in place by register tiles kParkedDepthStep depth steps at a time, their sums
// parked between steps (run_parked_column): its rows kParkedRowBytes or more apart. Tiles
// that read one line a row (see kInPlaceBMaxRowsOneLine) park only a single tile of rows:
// Zen 3, x 4096 -> 4096 as there, parked -> not: 5 rows 5.9 -> 6.5 ms, 8 rows 8.7 -> 8.3,
// 12 rows 8.4 -> 7.8 ms.
template <typename In>
bool reads_b_parked(const PackSource<In>& b, int64_t m) {
  const bool rows_ok = !tiles_read_one_line<In>() || m <= engine<In>().mk.mr;
  return reads_b_in_place(b, m) && b.depth_stride * int64_t(sizeof(In)) >= kParkedRowBytes &&
         rows_ok && engine<In>().mk.parked_by_rows[1];
}

// C with few rows whose B cannot be read in place but is depth-contiguous (a dense
// layer's input gradient dz·Wᵀ: W [K, N] seen as K rows of depth N) is computed
// transposed, Cᵀ = B·Aᵀ, reading B in place as the A side instead of transposing all
// of it into packed panels. Even at one row, where Cᵀ's micro-tiles are mostly empty
// columns, reading W once beats transposing it (batch 1, 4096 x 4096: W is 64 MiB).
// At most kInPlaceBMaxRows rows on every ISA (measured so; AVX2's wider reach for A in
// place was measured on forward products only).
template <typename In>
bool computes_transposed(const PackSource<In>& a, const PackSource<In>& b, int64_t m) {
  return !b.packed && !reads_b_in_place(b, m) && m <= kInPlaceBMaxRows && reads_a_in_place(b, m);
}

// The tiles of Cᵀ handed on as tiles of C: transposed into a buffer for `epilogue`,
// or, without one, stored transposed into the caller's accumulator.
template <typename Acc>
TileEpilogue<Acc> transposing_epilogue(const TileEpilogue<Acc>& epilogue,
                                       GemmAccumulator<Acc> accumulator) {
  return [&epilogue, accumulator](int64_t i0, int64_t mi, int64_t j0, int64_t nj, const Acc* tile,
                                  int64_t ld) {
    if (!epilogue) {
      // Column by column: each of C's rows gets mi contiguous elements (rows of C a
      // page or more apart made an element per row the slow order).
      for (int64_t j = 0; j < nj; ++j) {
        Acc* out = accumulator.c + (j0 + j) * accumulator.ldc + i0;
        for (int64_t i = 0; i < mi; ++i) out[i] = tile[i * ld + j];
      }
      return;
    }
    Acc transposed[kMaxMicroRows * 64];  // a micro-tile's nj (<= nr <= 64) x mi (<= mr)
    for (int64_t i = 0; i < mi; ++i)
      for (int64_t j = 0; j < nj; ++j) transposed[j * mi + i] = tile[i * ld + j];
    epilogue(j0, nj, i0, mi, transposed, mi);
  };
}

// gemm in the orientation given.
template <typename In, typename Acc>
void run_gemm(const PackSource<In>& a, const PackSource<In>& b, const TileEpilogue<Acc>& epilogue,
              TaskRunner& runner, GemmAccumulator<Acc> accumulator) {
  const int64_t m = a.rows, n = b.rows, k = a.depth;
  if (m <= 0 || n <= 0) return;
  const Engine<In>& e = engine<In>();
  const GemmCall<In> call{a,
                           b,
                           epilogue,
                           accumulator,
                           e,
                           partition(m, n, k, runner.num_threads(), e, accumulator.c == nullptr),
                           m,
                           n,
                           k,
                           depth_step<In>(k),
                           reads_b_in_place(b, m),
                           reads_b_in_strips(a, b, m, n),
                           reads_b_parked(b, m),
                           reads_a_in_place(a, n)};
  run_tasks(runner, call.part.tm * call.part.tn, [&call](int64_t task) { call.run_task(task); });
}

}  // namespace

template <typename In>
void gemm(const PackSource<In>& a, const PackSource<In>& b, const TileEpilogue<acc_t<In>>& epilogue,
          TaskRunner& runner, GemmAccumulator<acc_t<In>> accumulator) {
  if (computes_transposed(a, b, a.rows)) {
    run_gemm(b, a, transposing_epilogue(epilogue, accumulator), runner, GemmAccumulator<acc_t<In>>{});
  } else {
    run_gemm(a, b, epilogue, runner, accumulator);
  }
}

template <typename In>
int64_t packed_b_size(const PackSource<In>& b) {
  const int64_t nr = engine<In>().mk.nr;
  return ceil_div(b.rows, nr) * nr * round_up(std::max<int64_t>(b.depth, 1), kDepthGroup<In>);
}

template <typename In>
void pack_b_once(const PackSource<In>& b, In* out, TaskRunner& runner) {
  const Engine<In>& e = engine<In>();
  const int64_t n = b.rows, k = b.depth, nr = e.mk.nr;
  if (n == 0 || k == 0) return;
  const int64_t kc = depth_step<In>(k), panels = ceil_div(n, nr);
  constexpr int64_t kPanelsPerTask = 8;
  const int64_t chunks = ceil_div(panels, kPanelsPerTask), steps = ceil_div(k, kc);
  runner.run(steps * chunks, [&](int64_t task) {
    const int64_t pc = (task / chunks) * kc, first = (task % chunks) * kPanelsPerTask * nr;
    const int64_t kc_cur = std::min(kc, k - pc), kc_packed = round_up(kc_cur, kDepthGroup<In>);
    pack_source(b, e.mk, first, std::min(kPanelsPerTask * nr, n - first), pc, kc_cur,
                static_cast<int>(nr), out + packed_b_offset<In>(n, nr, pc, first, kc_packed));
  });
}

namespace {

// See gemm_split_depth: C small enough to split, depth long enough to be worth it.
constexpr int64_t kSplitMaxOutput = int64_t{1} << 16;  // elements of C
constexpr int64_t kSplitMinDepth = 4096;
constexpr int64_t kSplitMaxSlices = 16;

template <typename In>
PackSource<In> depth_slice(const PackSource<In>& src, int64_t begin, int64_t count) {
  PackSource<In> slice = src;
  slice.depth = count;
  if (src.data) {
    slice.data = src.data + begin * src.depth_stride;
  } else {
    slice.pack = [pack = src.pack, begin](int64_t r0, int64_t nr, int64_t d0, int64_t nd,
                                          int panel, In* dst) {
      pack(r0, nr, begin + d0, nd, panel, dst);
    };
  }
  return slice;
}

}  // namespace

template <typename In>
void gemm_split_depth(const PackSource<In>& a, const PackSource<In>& b,
                      const TileEpilogue<acc_t<In>>& epilogue, TaskRunner& runner,
                      GemmAccumulator<acc_t<In>> accumulator) {
  using Acc = acc_t<In>;
  const int64_t m = a.rows, n = b.rows, k = a.depth;
  const int64_t slices =
      m * n > kSplitMaxOutput ? 1 : std::clamp<int64_t>(k / kSplitMinDepth, 1, kSplitMaxSlices);
  if (slices == 1 || m == 0 || n == 0) {
    gemm<In>(a, b, epilogue, runner, accumulator);
    return;
  }
  std::vector<Acc> partials(slices * m * n);
  runner.run(slices, [&](int64_t s) {
    const int64_t begin = k * s / slices, end = k * (s + 1) / slices;
    Acc* out = partials.data() + s * m * n;
    SerialRunner serial;
    gemm<In>(depth_slice(a, begin, end - begin), depth_slice(b, begin, end - begin),
              [out, n](int64_t i0, int64_t mi, int64_t j0, int64_t nj, const Acc* tile,
                       int64_t ld) {
                for (int64_t i = 0; i < mi; ++i)
                  std::copy(tile + i * ld, tile + i * ld + nj, out + (i0 + i) * n + j0);
              },
              serial);
  });
  for (int64_t s = 1; s < slices; ++s) {
    const Acc* part = partials.data() + s * m * n;
    for (int64_t e = 0; e < m * n; ++e) partials[e] += part[e];
  }
  if (accumulator.c) {
    for (int64_t i = 0; i < m; ++i) {
      std::copy(partials.data() + i * n, partials.data() + (i + 1) * n,
                accumulator.c + i * accumulator.ldc);
    }
    if (epilogue) epilogue(0, m, 0, n, accumulator.c, accumulator.ldc);
  } else if (epilogue) {
    epilogue(0, m, 0, n, partials.data(), n);
  }
}


template <typename In>
GemmBlocking gemm_blocking() {
  const Engine<In>& e = engine<In>();
  GemmBlocking b;
  b.mr = e.mk.mr;
  b.nr = e.mk.nr;
  b.mc = e.blocking.mc;
  b.nc = e.blocking.nc;
  b.kc = e.blocking.kc;
  return b;
}

template <typename In>
void pack_strided_panels(const In* data, int64_t row_stride, int64_t depth_stride, int64_t r0,
                         int64_t nr, int64_t d0, int64_t nd, int panel, In* dst) {
  engine<In>().mk.pack(data, row_stride, depth_stride, r0, nr, d0, nd, panel, dst);
}

template int64_t packed_b_size<float>(const PackSource<float>&);
template int64_t packed_b_size<double>(const PackSource<double>&);
template int64_t packed_b_size<bfloat16_t>(const PackSource<bfloat16_t>&);
template void pack_b_once<float>(const PackSource<float>&, float*, TaskRunner&);
template void pack_b_once<double>(const PackSource<double>&, double*, TaskRunner&);
template void pack_b_once<bfloat16_t>(const PackSource<bfloat16_t>&, bfloat16_t*, TaskRunner&);
template void pack_strided_panels<float>(const float*, int64_t, int64_t, int64_t, int64_t,
                                         int64_t, int64_t, int, float*);
template void pack_strided_panels<double>(const double*, int64_t, int64_t, int64_t, int64_t,
                                          int64_t, int64_t, int, double*);
template GemmBlocking gemm_blocking<float>();
template GemmBlocking gemm_blocking<double>();
template void gemm<float>(const PackSource<float>&, const PackSource<float>&,
                          const TileEpilogue<float>&, TaskRunner&, GemmAccumulator<float>);
template void gemm_split_depth<float>(const PackSource<float>&, const PackSource<float>&,
                                      const TileEpilogue<float>&, TaskRunner&,
                                      GemmAccumulator<float>);
template void gemm_split_depth<double>(const PackSource<double>&, const PackSource<double>&,
                                       const TileEpilogue<double>&, TaskRunner&,
                                       GemmAccumulator<double>);
template void gemm<double>(const PackSource<double>&, const PackSource<double>&,
                           const TileEpilogue<double>&, TaskRunner&, GemmAccumulator<double>);
template void pack_strided_panels<bfloat16_t>(const bfloat16_t*, int64_t, int64_t, int64_t,
                                              int64_t, int64_t, int64_t, int, bfloat16_t*);
template GemmBlocking gemm_blocking<bfloat16_t>();
template void gemm<bfloat16_t>(const PackSource<bfloat16_t>&, const PackSource<bfloat16_t>&,
                               const TileEpilogue<float>&, TaskRunner&, GemmAccumulator<float>);
template void gemm_split_depth<bfloat16_t>(const PackSource<bfloat16_t>&,
                                           const PackSource<bfloat16_t>&,
                                           const TileEpilogue<float>&, TaskRunner&,
                                           GemmAccumulator<float>);

}  // namespace fusedlayers
