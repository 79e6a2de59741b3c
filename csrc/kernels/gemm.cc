// A first, portable GEMM engine: BLIS's loops (pack A and B blocks, macro-kernel over
// micro-tiles) with a plain C++ micro-kernel. The interface in gemm.h is what the ops
// rely on; ISA-specific micro-kernels replace only the inside of this file.
#include "gemm.h"

#include <algorithm>
#include <vector>

namespace fusedlayers {
namespace {

template <typename Acc>
struct Blocking;
template <>
struct Blocking<float> {
  static constexpr int kMR = 6, kNR = 16;
  static constexpr int64_t kMC = 96, kNC = 1024, kKC = 256;
};
template <>
struct Blocking<double> {
  static constexpr int kMR = 6, kNR = 8;
  static constexpr int64_t kMC = 96, kNC = 512, kKC = 256;
};

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

// acc_tile[MR x NR] (+)= a_panel[kc x MR]ᵀ · b_panel[kc x NR], both depth-major.
template <typename Acc, int MR, int NR>
void micro_kernel(int64_t kc, const Acc* a, const Acc* b, Acc* c, int64_t ldc, bool accumulate) {
  Acc acc[MR][NR] = {};
  for (int64_t p = 0; p < kc; ++p) {
    const Acc* ap = a + p * MR;
    const Acc* bp = b + p * NR;
    for (int i = 0; i < MR; ++i) {
      const Acc ai = ap[i];
      for (int j = 0; j < NR; ++j) acc[i][j] += ai * bp[j];
    }
  }
  for (int i = 0; i < MR; ++i) {
    Acc* ci = c + i * ldc;
    if (accumulate) {
      for (int j = 0; j < NR; ++j) ci[j] += acc[i][j];
    } else {
      for (int j = 0; j < NR; ++j) ci[j] = acc[i][j];
    }
  }
}

template <typename Acc>
struct ThreadScratch {
  std::vector<Acc> packed_a, packed_b, tile;
};

template <typename Acc>
ThreadScratch<Acc>& thread_scratch() {
  thread_local ThreadScratch<Acc> scratch;
  return scratch;
}

}  // namespace

template <typename Acc>
void gemm(const PackSource<Acc>& a, const PackSource<Acc>& b, const TileEpilogue<Acc>& epilogue,
          TaskRunner& runner) {
  using B = Blocking<Acc>;
  constexpr int MR = B::kMR, NR = B::kNR;
  const int64_t m = a.rows, n = b.rows, k = a.depth;
  if (m <= 0 || n <= 0) return;

  // Split N finer when M alone cannot keep every thread busy (small batches).
  const int64_t mc = std::min<int64_t>(B::kMC, round_up(m, MR));
  const int64_t m_blocks = ceil_div(m, mc);
  const int64_t want_n_blocks = ceil_div(std::max(1, runner.num_threads()), m_blocks);
  const int64_t nc = std::min<int64_t>(B::kNC, round_up(ceil_div(n, want_n_blocks), NR));
  const int64_t n_blocks = ceil_div(n, nc);

  runner.run(m_blocks * n_blocks, [&](int64_t task) {
    const int64_t i0 = (task / n_blocks) * mc, j0 = (task % n_blocks) * nc;
    const int64_t mi = std::min(mc, m - i0), nj = std::min(nc, n - j0);
    const int64_t mi_padded = round_up(mi, MR), nj_padded = round_up(nj, NR);
    ThreadScratch<Acc>& s = thread_scratch<Acc>();
    const int64_t kc_max = std::min<int64_t>(B::kKC, std::max<int64_t>(k, 1));
    s.packed_a.resize(mi_padded * kc_max);
    s.packed_b.resize(nj_padded * kc_max);
    s.tile.resize(mi_padded * nj_padded);
    const int64_t ld = nj_padded;
    if (k == 0) std::fill(s.tile.begin(), s.tile.end(), Acc(0));

    for (int64_t p0 = 0; p0 < k; p0 += B::kKC) {
      const int64_t kc = std::min<int64_t>(B::kKC, k - p0);
      const bool last = p0 + kc >= k;
      a.pack(i0, mi, p0, kc, MR, s.packed_a.data());
      b.pack(j0, nj, p0, kc, NR, s.packed_b.data());
      for (int64_t ir = 0; ir < mi; ir += MR) {
        for (int64_t jr = 0; jr < nj; jr += NR) {
          micro_kernel<Acc, MR, NR>(kc, s.packed_a.data() + ir * kc, s.packed_b.data() + jr * kc,
                                    s.tile.data() + ir * ld + jr, ld, p0 > 0);
        }
        // The strip of MR rows is finished and hot: hand it to the epilogue now.
        if (last) epilogue(i0 + ir, std::min<int64_t>(MR, mi - ir), j0, nj, s.tile.data() + ir * ld, ld);
      }
    }
    if (k == 0) epilogue(i0, mi, j0, nj, s.tile.data(), ld);
  });
}

const char* gemm_kernel_isa() { return "portable"; }

template void gemm<float>(const PackSource<float>&, const PackSource<float>&,
                          const TileEpilogue<float>&, TaskRunner&);
template void gemm<double>(const PackSource<double>&, const PackSource<double>&,
                           const TileEpilogue<double>&, TaskRunner&);

}  // namespace fusedlayers
