// Conv2D and Conv2DTranspose, forward and backward, by Winograd's minimal filtering,
// F(m x m, r x r) with m + r - 1 = a points per axis (a = 4, or 5 for F(4x4, 2x2)):
// each tile of m x m outputs comes from an a x a tile of input through a² products
// instead of m² r², and the a² products of every tile and channel pair are a² plain
// GEMMs on the engine:
//   V[p] = (Bᵀ d B)[p]      each tile d of the input, per channel (input transform)
//   U[p] = (G g Gᵀ)[p]      each channel pair's r x r kernel g (kernel transform)
//   M[p] = V[p] · U[p]      [tiles, depth] x [depth, filters], p < a²
//   y    = act(Aᵀ M A + bias) each tile's m x m outputs (output transform, epilogue)
// A stride-s convolution is s² stride-1 ones summed: phase (a, b) of the input,
// x[s·i + a, s·j + b], meets kernel taps (s·i' + a, s·j' + b), ceil(k / s) per axis. So
// the phases become channels (depth = s_h · s_w · in channels) and the kernel's phases
// r x r taps (zero past the kernel's end): k4 s2 is F(3x3, 2x2) or F(4x4, 2x2) with 4x
// the channels, k3 s1 is F(2x2, 3x3). The 4-point tilings use the points 0, 1, -1 and
// infinity, whose transforms add and subtract (and halve, in G) only, so rounding grows
// little beyond a direct sum's; F(4x4, 2x2) adds the point 2 (integer B, G and 6 A with
// entries up to 8, and a division by 36 at the end): max relative error against float64
// 1-4e-6 for k4 s2 layers of 8 to 16 channels where F(3x3, 2x2) gives 2-3e-7, a float
// sum's rounding either way, and exact results on integer-valued data, as a direct sum.
//
// Per tile of 3 x 3 outputs (r = 2) the products cost 16 multiplications per channel
// pair where a direct k4 s2 convolution costs 9 x 16 / 4 = 36: 2.25x fewer, less the
// tiles' part past the output's edge; F(4x4, 2x2) costs 25 per 16 outputs (2.56x fewer)
// and takes the sides that 4 tiles better than 3 (8, 16: alpha_for). The gradients and
// Conv2DTranspose are the same steps' adjoints (see transform_2d's users and the passes
// at the end).
#include "conv_winograd.h"

#include <algorithm>
#include <array>
#include <type_traits>

#include "column_sums.h"
#include "conv_groups.h"
#include "conv_lowered.h"
#include "gemm.h"
#include "gemm_operands.h"

namespace fusedlayers {
namespace {

// A tiling F(m x m, r x r): R taps per phase and axis (fewer are padded with zero
// taps), A points per axis of a transformed tile (A x A products per tile: one GEMM
// each), M = A + 1 - R outputs per tile and axis.
// kDivisor: the transforms back from the points (output, input adjoint, kernel adjoint)
// end with a division by it, the other transforms' matrices being integer multiples of
// the algorithm's (see input_axis).
template <int R, int A, int kDivisorOf = 1>
struct Scheme {
  static constexpr int kR = R, kAlpha = A, kPoints = A * A, kM = A + 1 - R;
  static constexpr int kDivisor = kDivisorOf;
};
using F3x2 = Scheme<2, 4>;      // points 0, 1, -1 and infinity
using F2x3 = Scheme<3, 4>;      // the same points
using F4x2 = Scheme<2, 5, 36>;  // points 0, 1, -1, 2 and infinity

// Elements of V and M per group of images (1 MiB of float), so that they stay in a 1-2
// MiB L2 between the transforms and the products (against 4 MiB, one thread, native
// harness: Conv2D 31x31x32->64 k4 s2 forward 1.41x -> 1.45-1.53x the lowered method's
// speed; two threads 1.09x -> 1.36x).
constexpr int64_t kGroupBudget = int64_t{1} << 18;
// The backward's groups (V, dV and Z) are larger: the kernel's gradient is a product as
// deep as a group's tiles, and each group's share of it (a² x depth x filters) is added
// into the sum (one thread, native harness, Conv2D 14x14x64->128 k4 s2: 9% of
// the time in groups of 8 images). 2^18 to 2^22 measured alike in tf.function.
constexpr int64_t kBackwardGroupBudget = int64_t{1} << 20;
// ...and at least this many tiles (the depth of that product) where the batch allows:
// Conv2DTranspose 8x8x256->128 k4 s2 has a share of 8 MiB for 36 tiles a group of 4
// images (fwd+bwd in tf.function, two threads, against the lowered method: 1.07x with
// groups of 4, 1.34x with 256 tiles or more; 1024: alike). The forward is best without
// (96 or 256 tiles: 2-10% slower).
constexpr int64_t kBackwardMinRows = 256;
// The shape rule, a cost model in multiply-adds per call: the a² products of each tile
// and channel pair, the kernel's transform and packing at about kernel_cost per
// transformed element (with the call's fixed costs), and the input and output
// transforms at about transform_cost per transformed element. Winograd where a direct
// convolution would cost at least kMinSpeedup times as much. The costs are fitted per
// tiling to the lowered method's time over Winograd's, fwd and fwd+bwd in tf.function on
// two threads, alternating in one process (the geometric mean of the two, measured
// against predicted). 4 points: k4 s2 31x31x32->64 batch 4 / 8 / 16 1.07 / 1.29 / 1.30
// against 1.15 / 1.28 / 1.36; 14x14x64->128 batch 4 / 8 / 16 0.77 / 0.95 / 1.17 against
// 0.66 / 0.98 / 1.29; 13x13x32->64 batch 32 0.94 / 0.96; 6x6x128->256 0.45 / 0.45; k3 s1
// same 16x16x64->64 batch 4 / 8 1.22 / 1.39 against 1.40 / 1.46, 32x32x32->32 batch 32
// 1.37 / 1.16; Conv2DTranspose k5 s2 5x5x128->64 batch 32 0.85 / 0.83. 5 points,
// Conv2DTranspose k4 s2 same: 8x8x256->128 batch 4 / 8 / 16 / 32 0.55 / 0.92 / 1.22 /
// 1.53 against 0.50 / 0.82 / 1.21 / 1.58, 16x16x128->64 batch 4 / 16 1.30 / 1.71 against
// 1.15 / 1.72. The rule from round 8 (one pair of costs, 64 and 20, fitted to the native
// harness, and a margin of 1.25) underrated the 4-point tilings by 10-35% here and left
// DCGAN's 8x8x256->128 at batch 16 on the lowered method, 1.22x slower. A small margin
// stays: predictions stray from these measurements by up to 15%, and the nearest shapes
// below it, 14x14x64->128 batch 8 (0.98) and 13x13x32->64 (0.96), measured 0.95 and 0.94.
// Shapes the refit moved to Winograd, checked the same way afterwards: k3 s1 same
// 16x16x64->64 batch 2 1.08x, 8x8x128->128 batch 4 1.19x, 16x16x32->32 batch 32 1.26x,
// 8x8x64->64 batch 16 1.21x, 14x14x256->256 batch 1 1.17x faster than lowered.
struct SchemeCosts {
  double kernel_cost, transform_cost;
};
constexpr SchemeCosts kFourPointCosts{36, 15};  // F(3x3, 2x2), F(2x2, 3x3)
constexpr SchemeCosts kFivePointCosts{64, 20};  // F(4x4, 2x2)
constexpr double kMinSpeedup = 1.05;

// This file's per-thread scratch slots (see packing_scratch).
enum ScratchSlot {
  kKernelSlot = 13,
  kKernelPanelsSlot = 14,
  kInputSlot = 15,
  kProductSlot = 16,
  kTileSlot = 17,
  kZerosSlot = 18,
  kGradientSlot = 19,
  kInputGradSlot = 20,
  kKernelGradSlot = 21,
  kDzSlot = 22,
  kPastEndSlot = 23
};

// The transforms' loops over channels, compiled once per vector width and picked by
// cpuid when the library loads (they only add, subtract and halve: the same bits on
// every width).
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define FUSEDLAYERS_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define FUSEDLAYERS_VECTOR_CLONES
#endif

// Kernel taps per stride phase along an axis.
int64_t phase_taps(const ConvAxis& a) { return ceil_div(a.kernel, a.stride); }

// Memory bounds: a group holds at least one image's transformed tiles (V, Z and the
// products), and the kernel's transform (with its packed copy and, in the backward, a
// share of its gradient per group in flight) is a² x depth x filters. Larger layers run
// the other methods, whose buffers are bounded per image group.
constexpr double kMaxImageElements = double(int64_t{1} << 23);   // 32 MiB of float
constexpr double kMaxKernelElements = double(int64_t{1} << 22);  // 16 MiB of float

// Taps per phase and axis of g's tiles (at least 2).
int64_t taps_per_phase(const ConvGeometry& g) {
  return std::max<int64_t>(2, std::max(phase_taps(g.h), phase_taps(g.w)));
}

// Points per axis for r taps: F(4, 2)'s 5 where its 4 x 4 output tiles take fewer
// products than F(3, 2)'s 3 x 3 ones over the small side (16 x 16: 4 x 4 tiles of 25
// products against 6 x 6 of 16 covering 18 x 18, 1.44x as many), else 4.
int alpha_for(int64_t r, const ConvGeometry& g) {
  if (r != 2) return 4;
  // In double: a huge (rejected-later-anyway) shape must not wrap.
  const double five = 25.0 * double(ceil_div(g.h.small, 4)) * double(ceil_div(g.w.small, 4));
  const double four = 16.0 * double(ceil_div(g.h.small, 3)) * double(ceil_div(g.w.small, 3));
  return five < four ? 5 : 4;
}

// Whether the algorithm computes g's convolution: no dilation, at most 3 taps per phase
// (fewer are padded with zero taps), within the memory bounds.
bool winograd_applies(const ConvGeometry& g) {
  const int64_t r = taps_per_phase(g);
  if (g.h.dilation != 1 || g.w.dilation != 1 || r > 3 || g.batch <= 0 || g.h.small <= 0 ||
      g.w.small <= 0 || g.big_channels <= 0 || g.small_channels <= 0) {
    return false;
  }
  const int64_t alpha = alpha_for(r, g), m = alpha + 1 - r;
  const double points = double(alpha * alpha);
  const double tiles = double(ceil_div(g.h.small, m)) * double(ceil_div(g.w.small, m));
  const double depth = double(g.h.stride) * double(g.w.stride) * double(g.big_channels);
  const double filters = double(g.small_channels);
  return tiles * points * (2 * depth + filters) <= kMaxImageElements &&
         points * depth * filters <= kMaxKernelElements;
}

struct Plan {
  int r = 2;      // taps per phase and axis
  int alpha = 4;  // points per axis of a transformed tile
  int m = 3;      // outputs per tile and axis: alpha + 1 - r
  int64_t cin = 0, cout = 0;
  int64_t depth = 0;                            // s_h · s_w · cin: the GEMMs' depth
  int64_t tiles_h = 0, tiles_w = 0, tiles = 0;  // per image
  int64_t group = 1;                            // images per group
};

Plan plan_of(const ConvGeometry& g, bool backward = false) {
  Plan p;
  p.r = int(taps_per_phase(g));
  p.alpha = alpha_for(p.r, g);
  p.m = p.alpha + 1 - p.r;
  p.cin = g.big_channels;
  p.cout = g.small_channels;
  p.depth = g.h.stride * g.w.stride * p.cin;
  p.tiles_h = ceil_div(g.h.small, p.m);
  p.tiles_w = ceil_div(g.w.small, p.m);
  p.tiles = p.tiles_h * p.tiles_w;
  const int64_t per_image = p.tiles * p.alpha * p.alpha * (p.depth * (backward ? 2 : 1) + p.cout);
  const int64_t budget = backward ? kBackwardGroupBudget : kGroupBudget;
  // The backward's minimum of tiles, as far as a group stays within one image's bound.
  const int64_t min_images =
      backward ? std::min(ceil_div(kBackwardMinRows, p.tiles),
                          std::max<int64_t>(1, int64_t(kMaxImageElements) / per_image))
               : 1;
  p.group = images_per_group(g.batch, std::max(budget / per_image, min_images));
  return p;
}

// The transforms on one axis of a tile, for F(3, 2) and F(2, 3) (points 0, 1, -1, inf)
// and F(4, 2) (points 0, 1, -1, 2, inf); the 2D ones apply them to columns, then rows.
// The loops over channels are the vectors. F(4, 2)'s B, G and A are kept in integers,
// A as 6 times the algorithm's, so that the transforms are exact on integer-valued data
// and only the division by 36 at the end of the transforms back rounds (a relu's
// derivative at exactly zero then sees the same zeros as a direct sum; with 1/6 inside G,
// DCGAN's fwd+bwd on the benchmark's integer-valued inputs was off by 4e-2). Multiples
// other than powers of two are written as additions, so that no multiply-add is
// contracted differently on different widths (a product by a power of two is exact,
// contracted or not).
template <class S>
inline void input_axis(const float* d, float* e) {  // e = Bᵀ d
  if constexpr (S::kAlpha == 5) {
    const float d1x2 = d[1] + d[1], d2x2 = d[2] + d[2], d3x2 = d[3] + d[3];
    e[0] = ((d[0] + d[0]) - d[1]) - d2x2 + d[3];
    e[1] = (d1x2 + d[2]) - d[3];
    e[2] = ((d2x2 + d[2]) - d1x2) - d[3];
    e[3] = d[3] - d[1];
    e[4] = ((d1x2 - d[2]) - d3x2) + d[4];
  } else {
    e[0] = d[0] - d[2];
    e[1] = d[1] + d[2];
    e[2] = d[2] - d[1];
    e[3] = S::kR == 2 ? d[3] - d[1] : d[1] - d[3];
  }
}

template <class S>
inline void output_axis(const float* t, float* o) {  // o = Aᵀ t
  if constexpr (S::kAlpha == 5) {  // 6 Aᵀ
    const float t1x3 = (t[1] + t[1]) + t[1], t3x2 = t[3] + t[3], t3x4 = t3x2 + t3x2;
    const float t4x3 = (t[4] + t[4]) + t[4];
    o[0] = ((((t[0] + t[0]) + t[0]) + t1x3) + t[2]) + t[3];
    o[1] = (t1x3 - t[2]) + t3x2;
    o[2] = (t1x3 + t[2]) + t3x4;
    o[3] = ((t1x3 - t[2]) + (t3x4 + t3x4)) + (t4x3 + t4x3);
  } else {
    o[0] = t[0] + t[1] + t[2];
    if constexpr (S::kR == 2) {
      o[1] = t[1] - t[2];
      o[2] = t[1] + t[2] + t[3];
    } else {
      o[1] = t[1] - t[2] - t[3];
    }
  }
}

template <class S>
inline void kernel_axis(const float* g, float* u) {  // u = G g
  if constexpr (S::kAlpha == 5) {
    u[0] = g[0];
    u[1] = g[0] + g[1];
    u[2] = g[0] - g[1];
    u[3] = g[0] + (g[1] + g[1]);
    u[4] = g[1];
  } else if constexpr (S::kR == 2) {
    u[0] = g[0];
    u[1] = (g[0] + g[1]) * 0.5f;
    u[2] = (g[0] - g[1]) * 0.5f;
    u[3] = g[1];
  } else {
    const float ends = g[0] + g[2];
    u[0] = g[0];
    u[1] = (ends + g[1]) * 0.5f;
    u[2] = (ends - g[1]) * 0.5f;
    u[3] = g[2];
  }
}

// Their adjoints, for the backward: y = Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A is linear in g and in
// d, so with dz's tiles transformed as Z = A dz Aᵀ, the input's tiles get B (Z ⊙ U) Bᵀ
// and the kernel Gᵀ (Σ Z ⊙ V) G, the sum over every tile. Halving comes last in each
// expression (F(4, 2) divides in transform_2d), so no multiply-add can be contracted
// differently on different widths.
template <class S>
inline void gradient_axis(const float* t, float* w) {  // w = A t, t of m entries
  if constexpr (S::kAlpha == 5) {  // 6 A
    const float sum = ((t[0] + t[1]) + t[2]) + t[3];
    const float t2x4 = (t[2] + t[2]) + (t[2] + t[2]), t3x8 = (t[3] + t[3]) * 4.0f;
    const float t3x3 = (t[3] + t[3]) + t[3];
    w[0] = (t[0] + t[0]) + t[0];
    w[1] = (sum + sum) + sum;
    w[2] = ((t[0] - t[1]) + t[2]) - t[3];
    w[3] = ((t[0] + (t[1] + t[1])) + t2x4) + t3x8;
    w[4] = t3x3 + t3x3;
    return;
  }
  w[0] = t[0];
  if constexpr (S::kR == 2) {
    w[1] = t[0] + t[1] + t[2];
    w[2] = t[0] - t[1] + t[2];
    w[3] = t[2];
  } else {
    w[1] = t[0] + t[1];
    w[2] = t[0] - t[1];
    w[3] = -t[1];
  }
}

template <class S>
inline void input_adjoint_axis(const float* e, float* d) {  // d = B e
  if constexpr (S::kAlpha == 5) {
    const float e1x2 = e[1] + e[1], e2x2 = e[2] + e[2], e4x2 = e[4] + e[4];
    d[0] = e[0] + e[0];
    d[1] = (((e1x2 - e[0]) - e2x2) - e[3]) + e4x2;
    d[2] = ((e[1] - (e[0] + e[0])) + (e2x2 + e[2])) - e[4];
    d[3] = (((e[0] - e[1]) - e[2]) + e[3]) - e4x2;
    d[4] = e[4];
  } else {
    d[0] = e[0];
    d[2] = e[1] + e[2] - e[0];
    if constexpr (S::kR == 2) {
      d[1] = e[1] - e[2] - e[3];
      d[3] = e[3];
    } else {
      d[1] = e[1] - e[2] + e[3];
      d[3] = -e[3];
    }
  }
}

template <class S>
inline void kernel_adjoint_axis(const float* u, float* g) {  // g = Gᵀ u
  if constexpr (S::kAlpha == 5) {
    g[0] = ((u[0] + u[1]) + u[2]) + u[3];
    g[1] = ((u[1] - u[2]) + (u[3] + u[3])) + u[4];
  } else if constexpr (S::kR == 2) {
    g[0] = ((u[0] + u[0]) + (u[1] + u[2])) * 0.5f;
    g[1] = ((u[1] - u[2]) + (u[3] + u[3])) * 0.5f;
  } else {
    g[0] = ((u[0] + u[0]) + (u[1] + u[2])) * 0.5f;
    g[1] = (u[1] - u[2]) * 0.5f;
    g[2] = ((u[1] + u[2]) + (u[3] + u[3])) * 0.5f;
  }
}

// One channel's 2D transform: `axis` (In values to Out) applied to each column of the
// In x In tile at(i, j), then to each row; put(i, j, value) for i, j < Out.
template <int In, int Out, int kDivisor = 1, typename Axis, typename At, typename Put>
inline void transform_2d(Axis axis, At at, Put put) {
  float t[Out][In], col[In], o[Out];
  for (int j = 0; j < In; ++j) {
    for (int i = 0; i < In; ++i) col[i] = at(i, j);
    axis(col, o);
    for (int i = 0; i < Out; ++i) t[i][j] = o[i];
  }
  for (int i = 0; i < Out; ++i) {
    axis(t[i], o);
    for (int j = 0; j < Out; ++j) put(i, j, kDivisor == 1 ? o[j] : o[j] / float(kDivisor));
  }
}

// The transforms' loops over channels c < n, one function each so that each is compiled
// per vector width. Transformed tiles are stored point by point: x[p * stride + c].

// v = Bᵀ d B, d[i][j] = src[a i + j][c] (a = S::kAlpha).
template <class S>
FUSEDLAYERS_VECTOR_CLONES
void transform_input(const std::array<const float*, S::kPoints>& src, int64_t n, float* v,
                     int64_t stride) {
#pragma GCC ivdep
  for (int64_t c = 0; c < n; ++c) {
    transform_2d<S::kAlpha, S::kAlpha>(
        input_axis<S>, [&](int i, int j) { return src[S::kAlpha * i + j][c]; },
        [&](int i, int j, float x) { v[(S::kAlpha * i + j) * stride + c] = x; });
  }
}

// u = G g Gᵀ, g[a][b] = src[a][b][c].
template <class S>
FUSEDLAYERS_VECTOR_CLONES
void transform_kernel(const float* const src[S::kR][S::kR], int64_t n, float* u, int64_t stride) {
#pragma GCC ivdep
  for (int64_t c = 0; c < n; ++c) {
    transform_2d<S::kR, S::kAlpha>(
        kernel_axis<S>, [&](int a, int b) { return src[a][b][c]; },
        [&](int i, int j, float x) { u[(S::kAlpha * i + j) * stride + c] = x; });
  }
}

// The m x m outputs Aᵀ M A into out[(i m + j) ldo + c], M[p] = mp[p * stride + c].
template <class S>
FUSEDLAYERS_VECTOR_CLONES
void transform_output(const float* mp, int64_t stride, int64_t n, float* out, int64_t ldo) {
  constexpr int m = S::kM;
#pragma GCC ivdep
  for (int64_t c = 0; c < n; ++c) {
    transform_2d<S::kAlpha, m, S::kDivisor>(
        output_axis<S>, [&](int i, int j) { return mp[(S::kAlpha * i + j) * stride + c]; },
        [&](int i, int j, float x) { out[(i * m + j) * ldo + c] = x; });
  }
}

// w = A t Aᵀ, t[i][j] = src[m i + j][c] (an m x m tile of dz).
template <class S>
FUSEDLAYERS_VECTOR_CLONES
void transform_gradient(const std::array<const float*, S::kPoints>& src, int64_t n, float* w,
                        int64_t stride) {
  constexpr int m = S::kM;
#pragma GCC ivdep
  for (int64_t c = 0; c < n; ++c) {
    transform_2d<m, S::kAlpha>(
        gradient_axis<S>, [&](int i, int j) { return src[m * i + j][c]; },
        [&](int i, int j, float x) { w[(S::kAlpha * i + j) * stride + c] = x; });
  }
}

// B E Bᵀ into out[p * ldo + c], E[p] = ep[p * stride + c].
template <class S>
FUSEDLAYERS_VECTOR_CLONES
void transform_input_adjoint(const float* ep, int64_t stride, int64_t n, float* out,
                             int64_t ldo) {
#pragma GCC ivdep
  for (int64_t c = 0; c < n; ++c) {
    transform_2d<S::kAlpha, S::kAlpha>(
        input_adjoint_axis<S>, [&](int i, int j) { return ep[(S::kAlpha * i + j) * stride + c]; },
        [&](int i, int j, float x) { out[(S::kAlpha * i + j) * ldo + c] = x; });
  }
}

// Gᵀ U G into dst[a][b][c], U[p] = up[p * stride + c].
template <class S>
FUSEDLAYERS_VECTOR_CLONES
void transform_kernel_adjoint(const float* up, int64_t stride, int64_t n, float* const dst[S::kR][S::kR]) {
#pragma GCC ivdep
  for (int64_t c = 0; c < n; ++c) {
    transform_2d<S::kAlpha, S::kR, S::kDivisor>(
        kernel_adjoint_axis<S>, [&](int i, int j) { return up[(S::kAlpha * i + j) * stride + c]; },
        [&](int a, int b, float x) { dst[a][b][c] = x; });
  }
}

// fn(d, taps) for every phase channel d = (phase_h · s_w + phase_w) · cin + c, in tasks
// across the runner, where taps[a][b] points at the kernel's row [cout] of tap
// (s_h · a + phase_h, s_w · b + phase_w) and channel c, or, for taps past
// the kernel's end: `zeros` to read, or (P float*, writing) a discarded row in the task's
// thread's scratch.
template <class S, typename P, typename Fn>
void for_each_phase_channel(const ConvGeometry& g, const Plan& p, P kernel, P zeros,
                            TaskRunner& runner, Fn&& fn) {
  const int64_t sh = g.h.stride, sw = g.w.stride;
  constexpr int64_t kChannelsPerTask = 16;
  const int64_t chunks = ceil_div(p.cin, kChannelsPerTask);
  run_tasks(runner, sh * sw * chunks, [&](int64_t task) {
    const int64_t phase = task / chunks, c0 = task % chunks * kChannelsPerTask;
    const int64_t ph = phase / sw, pw = phase % sw;
    P past_end = zeros;
    if constexpr (!std::is_const_v<std::remove_pointer_t<P>>) {
      past_end = packing_scratch<float, kPastEndSlot>(p.cout);
    }
    for (int64_t c = c0; c < std::min(p.cin, c0 + kChannelsPerTask); ++c) {
      P taps[S::kR][S::kR];
      for (int a = 0; a < S::kR; ++a) {
        for (int b = 0; b < S::kR; ++b) {
          const int64_t th = sh * a + ph, tw = sw * b + pw;
          const bool inside = th < g.h.kernel && tw < g.w.kernel;
          taps[a][b] = inside ? kernel + ((th * g.w.kernel + tw) * p.cin + c) * p.cout : past_end;
        }
      }
      fn(phase * p.cin + c, taps);
    }
  });
}

// U[p][d][f] = (G g Gᵀ)[p] for the kernel [kh, kw, cin, cout] (zeros: cout zeros).
template <class S>
void transform_kernel_all(const ConvGeometry& g, const Plan& p, const float* kernel,
                          const float* zeros, float* u, TaskRunner& runner) {
  for_each_phase_channel<S>(g, p, kernel, zeros, runner,
                            [&](int64_t d, const float* const taps[S::kR][S::kR]) {
                              transform_kernel<S>(taps, p.cout, u + d * p.cout, p.depth * p.cout);
                            });
}

// V = Bᵀ d B for every tile of a group's `images` big images (big: the first one's
// pixels) into v ([a²][rows][depth], rows = images · tiles), a task per row of tiles.
template <class S>
void transform_input_group(const ConvGeometry& g, const Plan& p, const float* big,
                           int64_t images, const float* zeros, float* v, TaskRunner& runner) {
  const int64_t rows = images * p.tiles;
  const int64_t sh = g.h.stride, sw = g.w.stride;
  run_tasks(runner, images * p.tiles_h, [&](int64_t task) {
    const int64_t image = task / p.tiles_h, th = task % p.tiles_h;
    const float* x_image = big + image * g.h.big * g.w.big * p.cin;
    for (int64_t tw = 0; tw < p.tiles_w; ++tw) {
      const int64_t tile = image * p.tiles + th * p.tiles_w + tw;
      for (int64_t ph = 0; ph < sh; ++ph) {
        // The tile's input rows for this phase (-1: padding).
        int64_t rows_in[S::kAlpha];
        for (int i = 0; i < S::kAlpha; ++i) {
          const int64_t row = sh * (th * p.m + i) + ph - g.h.pad_before;
          rows_in[i] = row >= 0 && row < g.h.big ? row : -1;
        }
        // Phases [pw0, pw0 + phases) along w as one run of phases * cin channels: the
        // pixels of each tile column j are then side by side, all in the image or all
        // padding (always so for one phase).
        auto transform = [&](int64_t pw0, int64_t phases) {
          std::array<const float*, S::kPoints> src;
          for (int j = 0; j < S::kAlpha; ++j) {
            const int64_t col = sw * (tw * p.m + j) + pw0 - g.w.pad_before;
            const bool inside = col >= 0 && col < g.w.big;
            for (int i = 0; i < S::kAlpha; ++i) {
              src[S::kAlpha * i + j] =
                  inside && rows_in[i] >= 0 ? x_image + (rows_in[i] * g.w.big + col) * p.cin : zeros;
            }
          }
          transform_input<S>(src, phases * p.cin, v + tile * p.depth + (ph * sw + pw0) * p.cin,
                             rows * p.depth);
        };
        bool whole = true;
        for (int j = 0; j < S::kAlpha; ++j) {
          const int64_t first = sw * (tw * p.m + j) - g.w.pad_before, last = first + sw - 1;
          whole = whole && (last < 0 || first >= g.w.big || (first >= 0 && last < g.w.big));
        }
        if (whole) {
          transform(0, sw);
        } else {
          for (int64_t pw = 0; pw < sw; ++pw) transform(pw, 1);
        }
      }
    }
  });
}

// Where a group's small outputs go: act(value + bias) into out and, where set, the
// pre-activation into z (pointers at the group's first image).
struct SmallOutput {
  float* out = nullptr;
  const float* bias = nullptr;
  ActivationSpec act;
  float* z = nullptr;
};

// The output transform Aᵀ M A of a group's products mo ([a²][rows][cout]) into its
// small images, a task per row of tiles.
template <class S>
void transform_output_group(const ConvGeometry& g, const Plan& p, const float* mo,
                            int64_t images, const SmallOutput& o, TaskRunner& runner) {
  const int64_t rows = images * p.tiles;
  run_tasks(runner, images * p.tiles_h, [&](int64_t task) {
    const int64_t image = task / p.tiles_h, th = task % p.tiles_h;
    float* outputs = packing_scratch<float, kTileSlot>(p.m * p.m * p.cout);
    for (int64_t tw = 0; tw < p.tiles_w; ++tw) {
      const int64_t tile = image * p.tiles + th * p.tiles_w + tw;
      transform_output<S>(mo + tile * p.cout, rows * p.cout, p.cout, outputs, p.cout);
      const int64_t ow = tw * p.m, width = std::min<int64_t>(p.m, g.w.small - ow);
      for (int64_t i = 0; i < p.m && th * p.m + i < g.h.small; ++i) {
        const int64_t first = ((image * g.h.small + th * p.m + i) * g.w.small + ow) * p.cout;
        epilogue_bias_act<float, float>(outputs + i * p.m * p.cout, p.cout, width, p.cout, o.bias,
                                        0, o.act, o.out + first, p.cout,
                                        o.z ? o.z + first : nullptr);
      }
    }
  });
}

// Zeros for the padding of the input (a run of s_w phases), of dz, and the kernel's
// missing taps, in this thread's scratch.
const float* zeros_for(const ConvGeometry& g, const Plan& p) {
  const int64_t count = std::max(g.w.stride * p.cin, p.cout);
  float* zeros = packing_scratch<float, kZerosSlot>(count);
  std::fill(zeros, zeros + count, 0.0f);
  return zeros;
}

// Each point's U[p] as B, `filters_as_rows` (filters x depth: the forward) or depth x
// filters (the input gradient), packed once for every group's product into this
// thread's scratch.
template <class S>
std::array<PackSource<float>, S::kPoints> transformed_kernel(const ConvGeometry& g, const Plan& p,
                                                          const float* kernel, const float* zeros,
                                                          bool filters_as_rows,
                                                          TaskRunner& runner) {
  float* u = packing_scratch<float, kKernelSlot>(S::kPoints * p.depth * p.cout);
  transform_kernel_all<S>(g, p, kernel, zeros, u, runner);
  std::array<PackSource<float>, S::kPoints> b;
  for (int pt = 0; pt < S::kPoints; ++pt) {
    const float* up = u + pt * p.depth * p.cout;
    b[pt] = filters_as_rows ? strided_source<float, float>(up, p.cout, p.depth, 1, p.cout)
                            : strided_source<float, float>(up, p.depth, p.cout, p.cout, 1);
  }
  const int64_t panel_size = packed_b_size(b[0]);
  float* panels = packing_scratch<float, kKernelPanelsSlot>(S::kPoints * panel_size);
  run_tasks(runner, S::kPoints, [&](int64_t pt) {
    SerialRunner serial;
    pack_b_once<float>(b[pt], panels + pt * panel_size, serial);
  });
  for (int pt = 0; pt < S::kPoints; ++pt) b[pt].packed = panels + pt * panel_size;
  return b;
}

// Z = A dz Aᵀ for every tile of a group's `images` small images (small: the first one's
// [positions, cout]) into z ([a²][rows][cout]), a task per row of tiles.
template <class S>
void transform_gradient_group(const ConvGeometry& g, const Plan& p, const float* small,
                              int64_t images, const float* zeros, float* z, TaskRunner& runner) {
  const int64_t rows = images * p.tiles;
  run_tasks(runner, images * p.tiles_h, [&](int64_t task) {
    const int64_t image = task / p.tiles_h, th = task % p.tiles_h;
    for (int64_t tw = 0; tw < p.tiles_w; ++tw) {
      std::array<const float*, S::kPoints> src;
      for (int i = 0; i < p.m; ++i) {
        const int64_t oh = th * p.m + i;
        for (int j = 0; j < p.m; ++j) {
          const int64_t ow = tw * p.m + j;
          src[p.m * i + j] = oh < g.h.small && ow < g.w.small
                                 ? small + ((image * g.h.small + oh) * g.w.small + ow) * p.cout
                                 : zeros;
        }
      }
      const int64_t tile = image * p.tiles + th * p.tiles_w + tw;
      transform_gradient<S>(src, p.cout, z + tile * p.cout, rows * p.cout);
    }
  });
}

// A group's big images (big: the first one's pixels) = the sum of B E Bᵀ over the tiles
// each pixel belongs to, E from e ([a²][rows][depth]). Tiles overlap where their inputs
// do, so rows of tiles run in two passes (even, then odd: only neighbours overlap) and
// each row's tiles in order: the same additions in the same order on any thread count.
template <class S>
void scatter_input_tiles_group(const ConvGeometry& g, const Plan& p, const float* e,
                               int64_t images, float* big, TaskRunner& runner) {
  const int64_t rows = images * p.tiles;
  const int64_t sh = g.h.stride, sw = g.w.stride;
  std::fill(big, big + images * g.h.big * g.w.big * p.cin, 0.0f);
  for (int64_t parity = 0; parity < 2; ++parity) {
    const int64_t per_image = (p.tiles_h - parity + 1) / 2;  // tile rows of this parity
    run_tasks(runner, images * per_image, [&](int64_t task) {
      const int64_t image = task / per_image, th = 2 * (task % per_image) + parity;
      float* d = packing_scratch<float, kTileSlot>(S::kPoints * p.depth);
      float* big_image = big + image * g.h.big * g.w.big * p.cin;
      for (int64_t tw = 0; tw < p.tiles_w; ++tw) {
        const int64_t tile = image * p.tiles + th * p.tiles_w + tw;
        transform_input_adjoint<S>(e + tile * p.depth, rows * p.depth, p.depth, d, p.depth);
        for (int i = 0; i < S::kAlpha; ++i) {
          for (int64_t ph = 0; ph < sh; ++ph) {
            const int64_t row = sh * (th * p.m + i) + ph - g.h.pad_before;
            if (row < 0 || row >= g.h.big) continue;
            for (int j = 0; j < S::kAlpha; ++j) {
              for (int64_t pw = 0; pw < sw; ++pw) {
                const int64_t col = sw * (tw * p.m + j) + pw - g.w.pad_before;
                if (col < 0 || col >= g.w.big) continue;
                const float* src = d + (S::kAlpha * i + j) * p.depth + (ph * sw + pw) * p.cin;
                float* dst = big_image + (row * g.w.big + col) * p.cin;
                for (int64_t c = 0; c < p.cin; ++c) dst[c] += src[c];
              }
            }
          }
        }
      }
    });
  }
  if constexpr (S::kDivisor != 1) {
    // The tiles' sums divided once per pixel (not each tile's share of it).
    const int64_t row = g.w.big * p.cin;
    run_tasks(runner, images * g.h.big, [&](int64_t r) {
      float* x = big + r * row;
      for (int64_t e = 0; e < row; ++e) x[e] = x[e] / float(S::kDivisor);
    });
  }
}

// c[p] = a[p] · b[p] for the a² points, a[p] rows x a_cols (row-major, [a²][rows][a_cols]),
// c[p] rows x b[p].rows, each product on one thread (the pool's threads share them where
// groups do not run one per thread).
template <class S>
void multiply_points(int64_t rows, const float* a, int64_t a_cols,
                     const std::array<PackSource<float>, S::kPoints>& b, float* c,
                     TaskRunner& runner) {
  const int64_t c_cols = b[0].rows;
  run_tasks(runner, S::kPoints, [&](int64_t pt) {
    SerialRunner serial;
    gemm<float>(strided_source<float, float>(a + pt * rows * a_cols, rows, a_cols, a_cols, 1), b[pt],
                {}, serial, GemmAccumulator<float>{c + pt * rows * c_cols, c_cols});
  });
}

// du[p] = v[p]ᵀ · z[p] for the a² points (a group's share of the kernel's transformed
// gradient, [a²][depth][cout]), each product on one thread.
template <class S>
void kernel_gradient_points(const Plan& p, int64_t rows, const float* v, const float* z,
                            float* du, TaskRunner& runner) {
  run_tasks(runner, S::kPoints, [&](int64_t pt) {
    SerialRunner serial;
    gemm<float>(strided_source<float, float>(v + pt * rows * p.depth, p.depth, rows, 1, p.depth),
                strided_source<float, float>(z + pt * rows * p.cout, p.cout, rows, 1, p.cout), {},
                serial, GemmAccumulator<float>{du + pt * p.depth * p.cout, p.cout});
  });
}

// dz = dy · act'(y, z) for `count` elements from `offset`, in this thread's scratch (dy
// itself for a linear activation).
const float* formed_dz(const ConvBackwardArgs<float>& a, int64_t offset, int64_t count,
                       TaskRunner& runner) {
  if (a.act.kind == Activation::kLinear) return a.dy + offset;
  float* dz = packing_scratch<float, kDzSlot>(count);
  activation_grad<float, float>(ActivationGradPrologue<float>{a.y, a.z, a.act}, a.dy, offset,
                                count, dz, runner);
  return dz;
}

// for_each_group_summing over [dU; db] (db: `bias_channels`), then dkernel = Gᵀ dU G (the
// taps past the kernel's end discarded) and dbias = db where set.
template <class S, typename Fn>
void sum_kernel_gradient(const ConvBackwardArgs<float>& a, const Plan& p, int64_t bias_channels,
                         TaskRunner& runner, Fn&& group_share) {
  const ConvGeometry& g = a.geometry;
  const int64_t du_count = S::kPoints * p.depth * p.cout;
  float* du = packing_scratch<float, kKernelGradSlot>(du_count + bias_channels);
  for_each_group_summing<float>(g.batch, p.group, runner, du_count + bias_channels, du,
                                [&](int64_t n0, int64_t images, TaskRunner& runner,
                                    float* share) {
                                  group_share(n0, images, runner, share, share + du_count);
                                });
  for_each_phase_channel<S>(g, p, a.dkernel, static_cast<float*>(nullptr), runner,
                            [&](int64_t d, float* const taps[S::kR][S::kR]) {
                              transform_kernel_adjoint<S>(du + d * p.cout, p.depth * p.cout,
                                                          p.cout, taps);
                            });
  if (a.dbias) std::copy(du + du_count, du + du_count + bias_channels, a.dbias);
}

// conv2d: y = act(Aᵀ (V · U) A + bias), V from x's tiles.
template <class S>
void conv2d_forward_winograd(const ConvForwardArgs<float>& a, const Plan& p, TaskRunner& runner) {
  const ConvGeometry& g = a.geometry;
  const float* zeros = zeros_for(g, p);
  const auto u = transformed_kernel<S>(g, p, a.kernel, zeros, /*filters_as_rows=*/true, runner);
  const int64_t big_image = g.h.big * g.w.big * p.cin, small_image = g.h.small * g.w.small * p.cout;
  for_each_group(g.batch, p.group, runner, [&](int64_t n0, int64_t images, TaskRunner& runner) {
    const int64_t rows = images * p.tiles;
    float* v = packing_scratch<float, kInputSlot>(S::kPoints * rows * p.depth);
    float* m = packing_scratch<float, kProductSlot>(S::kPoints * rows * p.cout);
    transform_input_group<S>(g, p, a.x + n0 * big_image, images, zeros, v, runner);
    multiply_points<S>(rows, v, p.depth, u, m, runner);
    const int64_t first = n0 * small_image;
    transform_output_group<S>(g, p, m, images,
                              {a.y + first, a.bias, a.act, a.z ? a.z + first : nullptr}, runner);
  });
}

// conv2d_transpose, conv2d's input gradient: y = act(bias + the tiles of Z · Uᵀ), Z from
// x's tiles (x is the small tensor).
template <class S>
void conv2d_transpose_forward_winograd(const ConvForwardArgs<float>& a, const Plan& p,
                                       TaskRunner& runner) {
  const ConvGeometry& g = a.geometry;
  const float* zeros = zeros_for(g, p);
  const auto u = transformed_kernel<S>(g, p, a.kernel, zeros, /*filters_as_rows=*/false, runner);
  const int64_t big_pixels = g.h.big * g.w.big, small_image = g.h.small * g.w.small * p.cout;
  for_each_group(g.batch, p.group, runner, [&](int64_t n0, int64_t images, TaskRunner& runner) {
    const int64_t rows = images * p.tiles;
    float* z = packing_scratch<float, kGradientSlot>(S::kPoints * rows * p.cout);
    float* e = packing_scratch<float, kInputGradSlot>(S::kPoints * rows * p.depth);
    transform_gradient_group<S>(g, p, a.x + n0 * small_image, images, zeros, z, runner);
    multiply_points<S>(rows, z, p.cout, u, e, runner);
    float* y = a.y + n0 * big_pixels * p.cin;
    float* pre = a.z ? a.z + n0 * big_pixels * p.cin : nullptr;
    scatter_input_tiles_group<S>(g, p, e, images, y, runner);
    run_tasks(runner, images, [&](int64_t image) {
      float* yi = y + image * big_pixels * p.cin;
      epilogue_bias_act<float, float>(yi, p.cin, big_pixels, p.cin, a.bias, 0, a.act, yi, p.cin,
                                      pre ? pre + image * big_pixels * p.cin : nullptr);
    });
  });
}

// The gradients of either op. dz lives on the output's side (small for conv2d, big for
// conv2d_transpose) and x on the other; V are the big tensor's tiles, Z the small one's,
// and dU = Σ Vᵀ · Z. dx is conv2d's input gradient of dz (the tiles of Z · Uᵀ added into
// the big pixels) or, for conv2d_transpose, conv2d of dz (Aᵀ (V · U) A).
template <class S, bool kTranspose>
void backward_winograd(const ConvBackwardArgs<float>& a, const Plan& p, TaskRunner& runner) {
  const ConvGeometry& g = a.geometry;
  const float* zeros = zeros_for(g, p);
  const auto u = transformed_kernel<S>(g, p, a.kernel, zeros, /*filters_as_rows=*/kTranspose,
                                       runner);
  const int64_t big_image = g.h.big * g.w.big * p.cin, small_image = g.h.small * g.w.small * p.cout;
  const int64_t dz_channels = kTranspose ? p.cin : p.cout;
  const int64_t dz_image = kTranspose ? big_image : small_image;
  sum_kernel_gradient<S>(a, p, dz_channels, runner, [&](int64_t n0, int64_t images,
                                                        TaskRunner& runner, float* du, float* db) {
    const int64_t rows = images * p.tiles;
    const float* dz = formed_dz(a, n0 * dz_image, images * dz_image, runner);
    std::fill(db, db + dz_channels, 0.0f);  // the share is not zeroed (du is stored whole)
    if (a.dbias) add_column_sums(dz, images * dz_image / dz_channels, dz_channels, db);
    float* v = packing_scratch<float, kInputSlot>(S::kPoints * rows * p.depth);
    float* z = packing_scratch<float, kGradientSlot>(S::kPoints * rows * p.cout);
    transform_input_group<S>(g, p, kTranspose ? dz : a.x + n0 * big_image, images, zeros, v,
                             runner);
    transform_gradient_group<S>(g, p, kTranspose ? a.x + n0 * small_image : dz, images, zeros, z,
                                runner);
    kernel_gradient_points<S>(p, rows, v, z, du, runner);
    if constexpr (kTranspose) {
      float* m = packing_scratch<float, kProductSlot>(S::kPoints * rows * p.cout);
      multiply_points<S>(rows, v, p.depth, u, m, runner);
      transform_output_group<S>(g, p, m, images, {a.dx + n0 * small_image, nullptr, {}, nullptr},
                                runner);
    } else {
      float* dv = packing_scratch<float, kInputGradSlot>(S::kPoints * rows * p.depth);
      multiply_points<S>(rows, z, p.cout, u, dv, runner);
      scatter_input_tiles_group<S>(g, p, dv, images, a.dx + n0 * big_image, runner);
    }
  });
}

// pass(S{}) with S the plan's scheme.
template <typename Pass>
void with_scheme(const Plan& p, Pass&& pass) {
  if (p.r == 3) {
    pass(F2x3{});
  } else if (p.alpha == 5) {
    pass(F4x2{});
  } else {
    pass(F3x2{});
  }
}

}  // namespace

bool conv_winograd_fits(const ConvGeometry& g) {
  const ConvMethod forced = forced_conv_method();
  if (forced == ConvMethod::kWinograd) return winograd_applies(g);
  if (forced != ConvMethod::kByShape || !winograd_applies(g)) return false;
  const Plan p = plan_of(g);
  const double pairs = double(p.depth) * double(p.cout);  // phase-channel pairs
  const double rows = double(g.batch) * double(p.tiles);
  const double direct = double(g.batch) * double(g.h.small) * double(g.w.small) *
                        double(g.h.kernel) * double(g.w.kernel) * double(p.cin) * double(p.cout);
  const SchemeCosts c = p.alpha == 5 ? kFivePointCosts : kFourPointCosts;
  const double winograd = double(p.alpha * p.alpha) * (rows * pairs + c.kernel_cost * pairs +
                                                        c.transform_cost * rows * double(p.depth + p.cout));
  return direct >= kMinSpeedup * winograd;
}

void winograd_conv2d_forward(const ConvForwardArgs<float>& a, TaskRunner& runner) {
  const Plan p = plan_of(a.geometry);
  with_scheme(p, [&](auto scheme) { conv2d_forward_winograd<decltype(scheme)>(a, p, runner); });
}
void winograd_conv2d_backward(const ConvBackwardArgs<float>& a, TaskRunner& runner) {
  const Plan p = plan_of(a.geometry, /*backward=*/true);
  with_scheme(p, [&](auto scheme) { backward_winograd<decltype(scheme), false>(a, p, runner); });
}
void winograd_conv2d_transpose_forward(const ConvForwardArgs<float>& a, TaskRunner& runner) {
  const Plan p = plan_of(a.geometry);
  with_scheme(p, [&](auto scheme) { conv2d_transpose_forward_winograd<decltype(scheme)>(a, p, runner); });
}
void winograd_conv2d_transpose_backward(const ConvBackwardArgs<float>& a, TaskRunner& runner) {
  const Plan p = plan_of(a.geometry, /*backward=*/true);
  with_scheme(p, [&](auto scheme) { backward_winograd<decltype(scheme), true>(a, p, runner); });
}

}  // namespace fusedlayers
