// Conv2D's forward by Winograd's minimal filtering, F(m x m, r x r) with m + r - 1 = 4:
// each tile of m x m outputs comes from a 4 x 4 tile of input through 16 products
// instead of m² r², and the 16 products of every tile and channel pair are 16 plain
// GEMMs on the engine:
//   V[p] = (Bᵀ d B)[p]      each tile d of the input, per channel (input transform)
//   U[p] = (G g Gᵀ)[p]      each channel pair's r x r kernel g (kernel transform)
//   M[p] = V[p] · U[p]      [tiles, depth] x [depth, filters], p < 16
//   y    = act(Aᵀ M A + bias) each tile's m x m outputs (output transform, epilogue)
// A stride-s convolution is s² stride-1 ones summed: phase (a, b) of the input,
// x[s·i + a, s·j + b], meets kernel taps (s·i' + a, s·j' + b), ceil(k / s) per axis. So
// the phases become channels (depth = s_h · s_w · in channels) and the kernel's phases
// r x r taps (zero past the kernel's end): k4 s2 is F(3x3, 2x2) with 4x the channels,
// k3 s1 is F(2x2, 3x3). Both use the points 0, 1, -1 and infinity, whose transforms add
// and subtract (and halve, in G) only, so rounding grows little beyond a direct sum's.
//
// Per tile of 3 x 3 outputs (r = 2) the products cost 16 multiplications per channel
// pair where a direct k4 s2 convolution costs 9 x 16 / 4 = 36: 2.25x fewer, less the
// tiles' part past the output's edge.
#include "conv_winograd.h"

#include <algorithm>
#include <array>

#include "conv_lowered.h"
#include "gemm.h"
#include "gemm_operands.h"

namespace fusedlayers {
namespace {

constexpr int kAlpha = 4;                 // points per axis of a transformed tile
constexpr int kPoints = kAlpha * kAlpha;  // products per tile: one GEMM each

// Elements of V and M per group of images (1 MiB of float), so that they stay in a 1-2
// MiB L2 between the transforms and the products (against 4 MiB, one thread, native
// harness: Conv2D 31x31x32->64 k4 s2 forward 1.41x -> 1.45-1.53x the lowered method's
// speed; two threads 1.09x -> 1.36x).
constexpr int64_t kGroupBudget = int64_t{1} << 18;
// ...and a multiple of this many groups where the batch allows, a group per thread
// (11 groups of 3 images on 2 threads left one thread a group short).
constexpr int64_t kGroupMultiple = 2;
// The shape rule, a cost model in multiply-adds per call: the 16 products of each tile
// and channel pair, the kernel's transform and packing at about kKernelCost per
// transformed element (with the call's fixed costs), and the input and output
// transforms at about kTransformCost per transformed element. Winograd where a direct
// convolution would cost at least kMinSpeedup times as much. Fitted to the native
// harness on two threads (ratios direct / Winograd, measured against predicted): k4 s2
// 31x31x32->64 batch 32 1.31 / 1.27, batch 4 0.79 / 0.93; 14x14x64->128 batch 32 1.45 /
// 1.30, batch 4 0.61 / 0.43; k3 s1 same 16x16x64->64 batch 32 1.53 / 1.36, batch 4 1.05 /
// 1.20; 28x28x128->128 batch 1 1.37 / 1.37; 13x13x32->64 k4 s2 batch 32 0.76 / 0.79.
constexpr double kKernelCost = 64;
constexpr double kTransformCost = 20;
constexpr double kMinSpeedup = 1.25;

// This file's per-thread scratch slots (see packing_scratch).
enum ScratchSlot {
  kKernelSlot = 13,
  kKernelPanelsSlot = 14,
  kInputSlot = 15,
  kProductSlot = 16,
  kTileSlot = 17,
  kZerosSlot = 18
};

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

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

// Whether the algorithm computes g's convolution at all: no dilation, at most 3 taps per
// phase (fewer are padded with zero taps).
bool winograd_applies(const ConvGeometry& g) {
  return g.h.dilation == 1 && g.w.dilation == 1 && std::max(phase_taps(g.h), phase_taps(g.w)) <= 3 &&
         g.batch > 0 && g.h.small > 0 && g.w.small > 0 && g.big_channels > 0 &&
         g.small_channels > 0;
}

struct Plan {
  int r = 2;  // taps per phase and axis; each tile has m = 5 - r outputs per axis
  int m = 3;
  int64_t cin = 0, cout = 0;
  int64_t depth = 0;                            // s_h · s_w · cin: the GEMMs' depth
  int64_t tiles_h = 0, tiles_w = 0, tiles = 0;  // per image
  int64_t group = 1;                            // images per group
};

Plan plan_of(const ConvGeometry& g) {
  Plan p;
  p.r = std::max<int>(2, int(std::max(phase_taps(g.h), phase_taps(g.w))));
  p.m = kAlpha + 1 - p.r;
  p.cin = g.big_channels;
  p.cout = g.small_channels;
  p.depth = g.h.stride * g.w.stride * p.cin;
  p.tiles_h = ceil_div(g.h.small, p.m);
  p.tiles_w = ceil_div(g.w.small, p.m);
  p.tiles = p.tiles_h * p.tiles_w;
  const int64_t per_image = p.tiles * kPoints * (p.depth + p.cout);
  const int64_t largest = std::clamp<int64_t>(kGroupBudget / per_image, 1, g.batch);
  const int64_t groups =
      std::min(g.batch, kGroupMultiple * ceil_div(ceil_div(g.batch, largest), kGroupMultiple));
  p.group = ceil_div(g.batch, groups);
  return p;
}

// The transforms for r = 2 (F(3, 2)) and r = 3 (F(2, 3)), on one axis of a tile; the
// 2D ones apply them to columns, then rows. The loops over channels are the vectors.
template <int R>
inline void input_axis(float d0, float d1, float d2, float d3, float* e) {  // e = Bᵀ d
  e[0] = d0 - d2;
  e[1] = d1 + d2;
  e[2] = d2 - d1;
  e[3] = R == 2 ? d3 - d1 : d1 - d3;
}

template <int R>
inline void output_axis(const float* t, float* o) {  // o = Aᵀ t
  o[0] = t[0] + t[1] + t[2];
  if constexpr (R == 2) {
    o[1] = t[1] - t[2];
    o[2] = t[1] + t[2] + t[3];
  } else {
    o[1] = t[1] - t[2] - t[3];
  }
}

template <int R>
inline void kernel_axis(const float* g, float* u) {  // u = G g
  if constexpr (R == 2) {
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

// v[p * stride + c] = (Bᵀ d B)[p] for c < n, where d[i][j] = src[4 i + j][c].
template <int R>
FUSEDLAYERS_VECTOR_CLONES
void transform_input(const std::array<const float*, kPoints>& src, int64_t n, float* v,
                     int64_t stride) {
#pragma GCC ivdep
  for (int64_t c = 0; c < n; ++c) {
    float e[kAlpha][kAlpha], f[kAlpha];
    for (int j = 0; j < kAlpha; ++j) {
      input_axis<R>(src[j][c], src[4 + j][c], src[8 + j][c], src[12 + j][c], f);
      for (int i = 0; i < kAlpha; ++i) e[i][j] = f[i];
    }
    for (int i = 0; i < kAlpha; ++i) {
      input_axis<R>(e[i][0], e[i][1], e[i][2], e[i][3], f);
      for (int j = 0; j < kAlpha; ++j) v[(kAlpha * i + j) * stride + c] = f[j];
    }
  }
}

// u[p * stride + c] = (G g Gᵀ)[p] for c < n, where g[a][b] = src[a][b][c].
template <int R>
FUSEDLAYERS_VECTOR_CLONES
void transform_kernel(const float* const src[R][R], int64_t n, float* u, int64_t stride) {
#pragma GCC ivdep
  for (int64_t c = 0; c < n; ++c) {
    float t[kAlpha][R], col[R], row[kAlpha];
    for (int b = 0; b < R; ++b) {
      for (int a = 0; a < R; ++a) col[a] = src[a][b][c];
      kernel_axis<R>(col, row);
      for (int i = 0; i < kAlpha; ++i) t[i][b] = row[i];
    }
    for (int i = 0; i < kAlpha; ++i) {
      kernel_axis<R>(t[i], row);
      for (int j = 0; j < kAlpha; ++j) u[(kAlpha * i + j) * stride + c] = row[j];
    }
  }
}

// out[(i m + j) ldo + c] = (Aᵀ M A)[i][j] for c < n, where M[p] = mp[p * stride + c].
template <int R>
FUSEDLAYERS_VECTOR_CLONES
void transform_output(const float* mp, int64_t stride, int64_t n, float* out, int64_t ldo) {
  constexpr int m = kAlpha + 1 - R;
#pragma GCC ivdep
  for (int64_t c = 0; c < n; ++c) {
    float t[m][kAlpha], col[kAlpha], o[m];
    for (int j = 0; j < kAlpha; ++j) {
      for (int i = 0; i < kAlpha; ++i) col[i] = mp[(kAlpha * i + j) * stride + c];
      output_axis<R>(col, o);
      for (int i = 0; i < m; ++i) t[i][j] = o[i];
    }
    for (int i = 0; i < m; ++i) {
      output_axis<R>(t[i], o);
      for (int j = 0; j < m; ++j) out[(i * m + j) * ldo + c] = o[j];
    }
  }
}

// U[p][d][f] for the kernel [kh, kw, cin, cout], d = (phase_h · s_w + phase_w) · cin + c.
// (zeros: cout zeros, the taps past the kernel's end).
template <int R>
void transform_kernel_all(const ConvGeometry& g, const Plan& p, const float* kernel,
                          const float* zeros, float* u, TaskRunner& runner) {
  const int64_t sh = g.h.stride, sw = g.w.stride;
  constexpr int64_t kChannelsPerTask = 16;
  const int64_t chunks = ceil_div(p.cin, kChannelsPerTask);
  run_tasks(runner, sh * sw * chunks, [&](int64_t task) {
    const int64_t phase = task / chunks, c0 = task % chunks * kChannelsPerTask;
    const int64_t ph = phase / sw, pw = phase % sw;
    for (int64_t c = c0; c < std::min(p.cin, c0 + kChannelsPerTask); ++c) {
      const float* src[R][R];
      for (int a = 0; a < R; ++a) {
        for (int b = 0; b < R; ++b) {
          const int64_t th = sh * a + ph, tw = sw * b + pw;
          const bool inside = th < g.h.kernel && tw < g.w.kernel;
          src[a][b] = inside ? kernel + ((th * g.w.kernel + tw) * p.cin + c) * p.cout : zeros;
        }
      }
      const int64_t d = phase * p.cin + c;
      transform_kernel<R>(src, p.cout, u + d * p.cout, p.depth * p.cout);
    }
  });
}

// The input transform of images [n0, n0 + images) into v ([16][rows][depth], rows =
// images · tiles), a task per row of tiles.
template <int R>
void transform_input_group(const ConvGeometry& g, const Plan& p, const float* x, int64_t n0,
                           int64_t images, const float* zeros, float* v, TaskRunner& runner) {
  const int64_t rows = images * p.tiles;
  const int64_t sh = g.h.stride, sw = g.w.stride;
  run_tasks(runner, images * p.tiles_h, [&](int64_t task) {
    const int64_t image = task / p.tiles_h, th = task % p.tiles_h;
    const float* x_image = x + (n0 + image) * g.h.big * g.w.big * p.cin;
    for (int64_t tw = 0; tw < p.tiles_w; ++tw) {
      const int64_t tile = image * p.tiles + th * p.tiles_w + tw;
      for (int64_t ph = 0; ph < sh; ++ph) {
        // The tile's input rows for this phase (-1: padding).
        int64_t rows_in[kAlpha];
        for (int i = 0; i < kAlpha; ++i) {
          const int64_t row = sh * (th * p.m + i) + ph - g.h.pad_before;
          rows_in[i] = row >= 0 && row < g.h.big ? row : -1;
        }
        // Phases [pw0, pw0 + phases) along w as one run of phases * cin channels: the
        // pixels of each tile column j are then side by side, all in the image or all
        // padding (always so for one phase).
        auto transform = [&](int64_t pw0, int64_t phases) {
          std::array<const float*, kPoints> src;
          for (int j = 0; j < kAlpha; ++j) {
            const int64_t col = sw * (tw * p.m + j) + pw0 - g.w.pad_before;
            const bool inside = col >= 0 && col < g.w.big;
            for (int i = 0; i < kAlpha; ++i) {
              src[kAlpha * i + j] =
                  inside && rows_in[i] >= 0 ? x_image + (rows_in[i] * g.w.big + col) * p.cin : zeros;
            }
          }
          transform_input<R>(src, phases * p.cin, v + tile * p.depth + (ph * sw + pw0) * p.cin,
                             rows * p.depth);
        };
        bool whole = true;
        for (int j = 0; j < kAlpha; ++j) {
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

// The output transform of a group's products mo ([16][rows][cout]), with bias and
// activation, into y (and z) of images [n0, n0 + images), a task per row of tiles.
template <int R>
void transform_output_group(const ConvForwardArgs<float>& a, const Plan& p, const float* mo,
                            int64_t n0, int64_t images, TaskRunner& runner) {
  const ConvGeometry& g = a.geometry;
  const int64_t rows = images * p.tiles;
  run_tasks(runner, images * p.tiles_h, [&](int64_t task) {
    const int64_t image = task / p.tiles_h, th = task % p.tiles_h;
    float* outputs = packing_scratch<float, kTileSlot>(p.m * p.m * p.cout);
    for (int64_t tw = 0; tw < p.tiles_w; ++tw) {
      const int64_t tile = image * p.tiles + th * p.tiles_w + tw;
      transform_output<R>(mo + tile * p.cout, rows * p.cout, p.cout, outputs, p.cout);
      const int64_t ow = tw * p.m, width = std::min<int64_t>(p.m, g.w.small - ow);
      for (int64_t i = 0; i < p.m && th * p.m + i < g.h.small; ++i) {
        const int64_t first = (((n0 + image) * g.h.small + th * p.m + i) * g.w.small + ow) * p.cout;
        epilogue_bias_act<float, float>(outputs + i * p.m * p.cout, p.cout, width, p.cout, a.bias,
                                        0, a.act, a.y + first, p.cout,
                                        a.z ? a.z + first : nullptr);
      }
    }
  });
}

template <int R>
void forward(const ConvForwardArgs<float>& a, const Plan& p, TaskRunner& runner) {
  const ConvGeometry& g = a.geometry;
  // Zeros for the input's padding and the kernel's missing taps.
  const int64_t zeros_count = std::max(g.w.stride * p.cin, p.cout);
  float* zeros = packing_scratch<float, kZerosSlot>(zeros_count);
  std::fill(zeros, zeros + zeros_count, 0.0f);
  float* u = packing_scratch<float, kKernelSlot>(kPoints * p.depth * p.cout);
  transform_kernel_all<R>(g, p, a.kernel, zeros, u, runner);
  // Each point's U as B (filters x depth), packed once for every group.
  std::array<PackSource<float>, kPoints> b;
  for (int pt = 0; pt < kPoints; ++pt)
    b[pt] = strided_source<float, float>(u + pt * p.depth * p.cout, p.cout, p.depth, 1, p.cout);
  const int64_t panel_size = packed_b_size(b[0]);
  float* panels = packing_scratch<float, kKernelPanelsSlot>(kPoints * panel_size);
  run_tasks(runner, kPoints, [&](int64_t pt) {
    SerialRunner serial;
    pack_b_once<float>(b[pt], panels + pt * panel_size, serial);
  });
  for (int pt = 0; pt < kPoints; ++pt) b[pt].packed = panels + pt * panel_size;

  auto run_group = [&](int64_t n0, int64_t images, TaskRunner& runner) {
    const int64_t rows = images * p.tiles;
    float* v = packing_scratch<float, kInputSlot>(kPoints * rows * p.depth);
    float* mo = packing_scratch<float, kProductSlot>(kPoints * rows * p.cout);
    transform_input_group<R>(g, p, a.x, n0, images, zeros, v, runner);
    // The 16 products side by side, each on one thread (the pool's threads share them
    // where groups do not run one per thread).
    run_tasks(runner, kPoints, [&](int64_t pt) {
      SerialRunner serial;
      const auto vp = strided_source<float, float>(v + pt * rows * p.depth, rows, p.depth,
                                                   p.depth, 1);
      gemm<float>(vp, b[pt], {}, serial, GemmAccumulator<float>{mo + pt * rows * p.cout, p.cout});
    });
    transform_output_group<R>(a, p, mo, n0, images, runner);
  };
  // A whole group on one thread where there are enough groups (as the lowered method).
  const int64_t groups = ceil_div(g.batch, p.group);
  if (runner.num_threads() > 1 && groups >= runner.num_threads()) {
    runner.run(groups, [&](int64_t group) {
      SerialRunner serial;
      const int64_t n0 = group * p.group;
      run_group(n0, std::min(p.group, g.batch - n0), serial);
    });
  } else {
    for (int64_t n0 = 0; n0 < g.batch; n0 += p.group)
      run_group(n0, std::min(p.group, g.batch - n0), runner);
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
  const double winograd = kPoints * (rows * pairs + kKernelCost * pairs +
                                     kTransformCost * rows * double(p.depth + p.cout));
  return direct >= kMinSpeedup * winograd;
}

void winograd_conv2d_forward(const ConvForwardArgs<float>& a, TaskRunner& runner) {
  const Plan p = plan_of(a.geometry);
  if (p.r == 2) {
    forward<2>(a, p, runner);
  } else {
    forward<3>(a, p, runner);
  }
}

}  // namespace fusedlayers
