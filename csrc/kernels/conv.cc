// conv2d and conv2d_transpose on the GEMM engine, from two kinds of pass over one
// geometry:
//   gather  (big -> small): one implicit GEMM over the small grid, each row a
//           receptive field of the big tensor: conv2d's forward and
//           conv2d_transpose's input gradient.
//   scatter (small -> big): the sub-pixel decomposition, stride_h x stride_w
//           implicit GEMMs, one per phase of the big grid, each a stride-1
//           correlation of the small tensor with the kernel taps of that phase:
//           conv2d_transpose's forward and conv2d's input gradient. No product
//           with an inserted zero is ever computed.
// The weight gradient of either op is one GEMM per pass of its forward, summing
// dz (on the pass's output grid) times the pass's input patches over positions.
#include "conv.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "conv_operands.h"
#include "dtype.h"

namespace fusedlayers {
namespace {

int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }
int64_t ceil_div(int64_t a, int64_t b) { return -floor_div(-a, b); }

// One axis of a pass: how its grid reads the input (PatchAxis), which kernel index
// tap t is, and which output index grid position g writes.
struct PassAxis {
  PatchAxis read;
  int64_t kernel_first = 0, kernel_step = 1;
  int64_t write_step = 1, write_offset = 0, write_size = 0;
};

struct Pass {
  PassAxis h, w;
};

PassAxis gather_axis(const ConvAxis& a) {
  PassAxis p;
  p.read = PatchAxis{a.small, a.kernel, a.stride, a.dilation, -a.pad_before, a.big};
  p.write_size = a.small;
  return p;
}

// Phase rho of the big axis: positions i with (i + pad) % s == rho, i = j s + rho - pad,
// receive the taps k = rho + t s from small index j - t (dilation is 1 when s > 1,
// and for s == 1 the one phase reads j - t d).
PassAxis scatter_axis(const ConvAxis& a, int64_t rho) {
  const int64_t s = a.stride, p = a.pad_before;
  const int64_t j_first = ceil_div(p - rho, s);
  const int64_t j_last = floor_div(a.big - 1 + p - rho, s);
  PassAxis out;
  const int64_t taps = rho < a.kernel ? ceil_div(a.kernel - rho, s) : 0;
  out.read = PatchAxis{std::max<int64_t>(j_last - j_first + 1, 0), taps, 1, -a.dilation, j_first,
                       a.small};
  out.kernel_first = rho;
  out.kernel_step = s;
  out.write_step = s;
  out.write_offset = j_first * s + rho - p;
  out.write_size = a.big;
  return out;
}

std::vector<Pass> gather_passes(const ConvGeometry& g) {
  return {Pass{gather_axis(g.h), gather_axis(g.w)}};
}

std::vector<Pass> scatter_passes(const ConvGeometry& g) {
  std::vector<Pass> passes;
  for (int64_t rh = 0; rh < g.h.stride; ++rh)
    for (int64_t rw = 0; rw < g.w.stride; ++rw)
      passes.push_back(Pass{scatter_axis(g.h, rh), scatter_axis(g.w, rw)});
  return passes;
}

// Which side of the geometry a pass reads (its input); it writes the other side.
struct Sides {
  int64_t in_channels, out_channels;
  int64_t in_stride, out_stride;  // channel strides inside one kernel tap
};

Sides sides_of(const ConvGeometry& g, bool input_is_big) {
  const int64_t cb = g.big_channels, cs = g.small_channels;
  return input_is_big ? Sides{cb, cs, cs, 1} : Sides{cs, cb, 1, cs};
}

// Weight gradients of layers with few channels are GEMMs with a small output and a
// long depth (every position of the batch). The engine parallelizes over output
// tiles only, so such a GEMM is cut into depth slices, each summed by one task into
// its own partial, the partials then added in order. The slice count depends on the
// shape alone, which keeps results identical for any thread count.
constexpr int64_t kSplitMaxOutput = int64_t{1} << 16;  // elements of C
constexpr int64_t kSplitMinDepth = 4096;
constexpr int64_t kSplitMaxSlices = 16;

template <typename Acc>
PackSource<Acc> depth_slice(const PackSource<Acc>& src, int64_t begin, int64_t count) {
  PackSource<Acc> slice = src;
  slice.depth = count;
  if (src.data) {
    slice.data = src.data + begin * src.depth_stride;
  } else {
    slice.pack = [pack = src.pack, begin](int64_t r0, int64_t nr, int64_t d0, int64_t nd,
                                          int panel, Acc* dst) {
      pack(r0, nr, begin + d0, nd, panel, dst);
    };
  }
  return slice;
}

template <typename Acc>
void gemm_split_depth(const PackSource<Acc>& a, const PackSource<Acc>& b,
                      const TileEpilogue<Acc>& epilogue, TaskRunner& runner) {
  const int64_t m = a.rows, n = b.rows, k = a.depth;
  const int64_t slices =
      m * n > kSplitMaxOutput ? 1 : std::clamp<int64_t>(k / kSplitMinDepth, 1, kSplitMaxSlices);
  if (slices == 1 || m == 0 || n == 0) {
    gemm<Acc>(a, b, epilogue, runner);
    return;
  }
  std::vector<Acc> partials(slices * m * n);
  runner.run(slices, [&](int64_t s) {
    const int64_t begin = k * s / slices, end = k * (s + 1) / slices;
    Acc* out = partials.data() + s * m * n;
    SerialRunner serial;
    gemm<Acc>(depth_slice(a, begin, end - begin), depth_slice(b, begin, end - begin),
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
  epilogue(0, m, 0, n, partials.data(), n);
}

template <typename T>
PatchView<T> input_view(const Pass& pass, const T* data, int64_t batch, int64_t channels,
                        const ActivationGradPrologue<T>* prologue) {
  PatchView<T> v;
  v.data = data;
  v.batch = batch;
  v.channels = channels;
  v.h = pass.h.read;
  v.w = pass.w.read;
  v.has_prologue = prologue != nullptr;
  if (prologue) v.prologue = *prologue;
  return v;
}

// The pass's output tensor seen on its grid, one tap per position.
template <typename T>
PatchView<T> output_view(const Pass& pass, const T* data, int64_t batch, int64_t channels,
                         const ActivationGradPrologue<T>* prologue) {
  auto axis = [](const PassAxis& a) {
    return PatchAxis{a.read.grid, 1, a.write_step, 0, a.write_offset, a.write_size};
  };
  PatchView<T> v;
  v.data = data;
  v.batch = batch;
  v.channels = channels;
  v.h = axis(pass.h);
  v.w = axis(pass.w);
  v.has_prologue = prologue != nullptr;
  if (prologue) v.prologue = *prologue;
  return v;
}

template <typename T>
KernelTaps<T> kernel_taps(const Pass& pass, const ConvGeometry& g, const T* kernel,
                          const Sides& s) {
  KernelTaps<T> k;
  k.kernel = kernel;
  k.kernel_w = g.w.kernel;
  k.tap_size = g.big_channels * g.small_channels;
  k.first_h = pass.h.kernel_first;
  k.step_h = pass.h.kernel_step;
  k.taps_h = pass.h.read.taps;
  k.first_w = pass.w.kernel_first;
  k.step_w = pass.w.kernel_step;
  k.taps_w = pass.w.read.taps;
  k.in_channels = s.in_channels;
  k.in_stride = s.in_stride;
  k.out_channels = s.out_channels;
  k.out_stride = s.out_stride;
  return k;
}

// out = act(in (*) kernel + bias) over every pass (bias, z null and act linear for
// an input gradient); `prologue` turns `in` into dz first.
template <typename T>
void run_forward_passes(const std::vector<Pass>& passes, const ConvGeometry& g,
                        bool input_is_big, const T* in, const ActivationGradPrologue<T>* prologue,
                        const T* kernel, const T* bias, ActivationSpec act, T* out, T* z,
                        TaskRunner& runner) {
  using Acc = acc_t<T>;
  const Sides s = sides_of(g, input_is_big);
  for (const Pass& pass : passes) {
    const PatchView<T> view = input_view(pass, in, g.batch, s.in_channels, prologue);
    const auto a = patch_rows_source<T, Acc>(view);
    const auto b = kernel_taps_source<T, Acc>(kernel_taps(pass, g, kernel, s));
    const int64_t grid_h = pass.h.read.grid, grid_w = pass.w.read.grid;
    gemm<Acc>(
        a, b,
        [&](int64_t i0, int64_t mi, int64_t j0, int64_t nj, const Acc* tile, int64_t ld) {
          for (int64_t i = 0; i < mi; ++i) {
            const int64_t pos = i0 + i;
            const int64_t n = pos / (grid_h * grid_w), hw = pos - n * grid_h * grid_w;
            const int64_t gh = hw / grid_w, gw = hw - gh * grid_w;
            const int64_t oh = gh * pass.h.write_step + pass.h.write_offset;
            const int64_t ow = gw * pass.w.write_step + pass.w.write_offset;
            const int64_t px =
                ((n * pass.h.write_size + oh) * pass.w.write_size + ow) * s.out_channels + j0;
            epilogue_bias_act<T, Acc>(tile + i * ld, ld, 1, nj, bias, j0, act, out + px, 0,
                                      z ? z + px : nullptr);
          }
        },
        runner);
  }
}

// dkernel and dbias from dz = dy * act'(.) on the output side of `passes` and the
// forward input `in`: per pass, C[out channel, (tap, in channel) | ones] sums
// dz x input patches over the pass's grid.
template <typename T>
void run_weight_grad_passes(const std::vector<Pass>& passes, const ConvGeometry& g,
                            bool input_is_big, const T* in, const T* dy,
                            const ActivationGradPrologue<T>& prologue, T* dkernel, T* dbias,
                            TaskRunner& runner) {
  using Acc = acc_t<T>;
  const Sides s = sides_of(g, input_is_big);
  std::vector<Acc> bias_sum(dbias ? s.out_channels : 0, Acc(0));
  for (const Pass& pass : passes) {
    const auto a = patch_depth_source<T, Acc>(
        output_view(pass, dy, g.batch, s.out_channels, &prologue), false);
    const PatchView<T> in_view = input_view<T>(pass, in, g.batch, s.in_channels, nullptr);
    const auto b = patch_depth_source<T, Acc>(in_view, dbias != nullptr);
    const KernelTaps<T> taps = kernel_taps(pass, g, dkernel, s);
    const int64_t real_cols = in_view.taps() * s.in_channels;
    gemm_split_depth<Acc>(
        a, b,
        [&](int64_t i0, int64_t mi, int64_t j0, int64_t nj, const Acc* tile, int64_t ld) {
          for (int64_t j = j0; j < j0 + nj; ++j) {
            const Acc* col = tile + (j - j0);
            if (j == real_cols) {
              for (int64_t i = 0; i < mi; ++i) bias_sum[i0 + i] += col[i * ld];
              continue;
            }
            const int64_t tap = j / s.in_channels, c = j - tap * s.in_channels;
            T* dst = dkernel + taps.tap_offset(tap) + c * s.in_stride;
            for (int64_t i = 0; i < mi; ++i) {
              dst[(i0 + i) * s.out_stride] = store_as<T>(col[i * ld]);
            }
          }
        },
        runner);
  }
  for (size_t i = 0; i < bias_sum.size(); ++i) dbias[i] = store_as<T>(bias_sum[i]);
}

// The scatter direction (small -> big) as one plain GEMM and a col2im gather, for a
// few images at a time:
//   P[small position, (tap, big channel)] = in[small position, :] . kernel[tap, big, :]
//   out[big position] = act(bias + sum over the taps that reach it of P[...]).
// Both GEMM operands are plain matrices (the kernel [kh, kw, big C, small C] is a
// row-major [taps * big C, small C] one), packed by the engine's vectorized loops,
// and N = taps * big C keeps the micro-tiles full even for a layer with one or three
// output channels, where the sub-pixel passes (N = big C) waste most of each tile and
// spend their time gathering patches. P holds about taps / stride^2 times the
// output's elements, so images are taken in groups whose P fits kCol2imBudget; each
// big element sums its taps in a fixed order, so results do not depend on threads.
constexpr int64_t kCol2imBudget = int64_t{1} << 20;  // elements of P per group

int64_t col2im_elements_per_image(const ConvGeometry& g) {
  return g.h.small * g.w.small * g.h.kernel * g.w.kernel * g.big_channels;
}

// FUSEDLAYERS_CONV_SCATTER=col2im or subpixel forces one method (read once; tests
// use it to cover both on any shape); otherwise P's size decides.
bool scatter_by_col2im(const ConvGeometry& g) {
  static const int forced = [] {
    const char* name = std::getenv("FUSEDLAYERS_CONV_SCATTER");
    if (!name || !*name) return -1;
    if (std::strcmp(name, "col2im") == 0) return 1;
    if (std::strcmp(name, "subpixel") == 0) return 0;
    std::fprintf(stderr,
                 "fusedlayers: FUSEDLAYERS_CONV_SCATTER must be col2im or subpixel; got '%s', "
                 "choosing by shape\n",
                 name);
    return -1;
  }();
  if (forced >= 0) return forced == 1;
  return col2im_elements_per_image(g) <= kCol2imBudget;
}

// The (tap, small index) pairs that reach each index of the big axis, in tap order:
// big = small * stride + tap * dilation - pad_before.
struct AxisReach {
  std::vector<int64_t> begin;  // pairs of big index b: [begin[b], begin[b + 1])
  std::vector<int64_t> tap, small;
};

AxisReach axis_reach(const ConvAxis& a) {
  AxisReach r;
  r.begin.reserve(a.big + 1);
  for (int64_t b = 0; b < a.big; ++b) {
    r.begin.push_back(static_cast<int64_t>(r.tap.size()));
    for (int64_t t = 0; t < a.kernel; ++t) {
      const int64_t num = b + a.pad_before - t * a.dilation;
      if (num < 0 || num % a.stride != 0 || num / a.stride >= a.small) continue;
      r.tap.push_back(t);
      r.small.push_back(num / a.stride);
    }
  }
  r.begin.push_back(static_cast<int64_t>(r.tap.size()));
  return r;
}

// sums[big w, :] += p_row[small w, tap w, :] over one row of P (one small row and
// kernel row): each small position adds its kw taps to the big positions they reach,
// which for dilation 1 is one contiguous run of kw * channels (clipped at the edges).
template <typename Acc>
void add_row_taps(const ConvAxis& w, int64_t channels, int64_t ld, const Acc* p_row, Acc* sums) {
  for (int64_t ws = 0; ws < w.small; ++ws) {
    const int64_t wb0 = ws * w.stride - w.pad_before;
    const int64_t lo = wb0 >= 0 ? 0 : (-wb0 + w.dilation - 1) / w.dilation;
    const int64_t hi = std::min(w.kernel, (w.big - wb0 + w.dilation - 1) / w.dilation);
    const Acc* src = p_row + ws * ld;
    if (w.dilation == 1) {
      const int64_t base = wb0 * channels;  // negative at the left edge, where lo > 0
      for (int64_t e = lo * channels; e < hi * channels; ++e) sums[base + e] += src[e];
      continue;
    }
    for (int64_t t = lo; t < hi; ++t) {
      Acc* dst = sums + (wb0 + t * w.dilation) * channels;
      for (int64_t c = 0; c < channels; ++c) dst[c] += src[t * channels + c];
    }
  }
}

template <typename T>
void run_scatter_col2im(const ConvGeometry& g, const T* in,
                        const ActivationGradPrologue<T>* prologue, const T* kernel, const T* bias,
                        ActivationSpec act, T* out, T* z, TaskRunner& runner) {
  using Acc = acc_t<T>;
  const int64_t cs = g.small_channels, cb = g.big_channels;
  const int64_t small_image = g.h.small * g.w.small, big_image = g.h.big * g.w.big;
  const int64_t taps = g.h.kernel * g.w.kernel, ld = taps * cb;
  const int64_t group =
      std::clamp<int64_t>(kCol2imBudget / std::max<int64_t>(col2im_elements_per_image(g), 1), 1,
                          std::max<int64_t>(g.batch, 1));
  const AxisReach reach_h = axis_reach(g.h);
  const auto b = strided_source<T, Acc>(kernel, ld, cs, cs, 1);
  Acc* p = packing_scratch<Acc, 3>(group * small_image * ld);
  for (int64_t n0 = 0; n0 < g.batch; n0 += group) {
    const int64_t images = std::min(group, g.batch - n0);
    const int64_t offset = n0 * small_image * cs;
    ActivationGradPrologue<T> shifted;
    if (prologue) {
      shifted = *prologue;
      if (shifted.y) shifted.y += offset;
      if (shifted.z) shifted.z += offset;
    }
    const auto a = strided_source<T, Acc>(in + offset, images * small_image, cs, cs, 1,
                                          prologue ? &shifted : nullptr);
    gemm<Acc>(a, b, {}, runner, GemmAccumulator<Acc>{p, ld});
    // One task per big row: the bias plus its taps summed into a row, then the
    // activation over the whole row at once (a layer with few channels would
    // otherwise pay the epilogue's per-call cost for every pixel).
    runner.run(images * g.h.big, [&](int64_t task) {
      const int64_t image = task / g.h.big, hb = task - image * g.h.big;
      Acc* sums = packing_scratch<Acc, 4>(g.w.big * cb);
      for (int64_t wb = 0; wb < g.w.big; ++wb)
        for (int64_t c = 0; c < cb; ++c) sums[wb * cb + c] = bias ? load_as<Acc>(bias[c]) : Acc(0);
      for (int64_t ih = reach_h.begin[hb]; ih < reach_h.begin[hb + 1]; ++ih) {
        const Acc* p_row = p + (image * g.h.small + reach_h.small[ih]) * g.w.small * ld +
                           reach_h.tap[ih] * g.w.kernel * cb;
        add_row_taps<Acc>(g.w, cb, ld, p_row, sums);
      }
      const int64_t px = ((n0 + image) * big_image + hb * g.w.big) * cb;
      epilogue_bias_act<T, Acc>(sums, 0, 1, g.w.big * cb, static_cast<const T*>(nullptr), 0, act,
                                out + px, 0, z ? z + px : nullptr);
    });
  }
}

// The scatter direction by whichever method suits the shape.
template <typename T>
void run_scatter(const ConvGeometry& g, const T* in, const ActivationGradPrologue<T>* prologue,
                 const T* kernel, const T* bias, ActivationSpec act, T* out, T* z,
                 TaskRunner& runner) {
  if (scatter_by_col2im(g)) {
    run_scatter_col2im<T>(g, in, prologue, kernel, bias, act, out, z, runner);
  } else {
    run_forward_passes<T>(scatter_passes(g), g, /*input_is_big=*/false, in, prologue, kernel,
                          bias, act, out, z, runner);
  }
}

template <typename T>
void conv_forward(const ConvForwardArgs<T>& a, bool input_is_big, TaskRunner& runner) {
  const ConvGeometry& g = a.geometry;
  if (input_is_big) {
    run_forward_passes<T>(gather_passes(g), g, true, a.x, nullptr, a.kernel, a.bias, a.act, a.y,
                          a.z, runner);
  } else {
    run_scatter<T>(g, a.x, nullptr, a.kernel, a.bias, a.act, a.y, a.z, runner);
  }
}

// The input gradient is the other op's forward applied to dz; the weight gradient
// runs over this op's own forward passes.
template <typename T>
void conv_backward(const ConvBackwardArgs<T>& a, bool input_is_big, TaskRunner& runner) {
  const ConvGeometry& g = a.geometry;
  const ActivationGradPrologue<T> prologue{a.y, a.z, a.act};
  const std::vector<Pass> forward = input_is_big ? gather_passes(g) : scatter_passes(g);
  if (input_is_big) {
    run_scatter<T>(g, a.dy, &prologue, a.kernel, nullptr, ActivationSpec{}, a.dx, nullptr, runner);
  } else {
    run_forward_passes<T>(gather_passes(g), g, true, a.dy, &prologue, a.kernel, nullptr,
                          ActivationSpec{}, a.dx, nullptr, runner);
  }
  run_weight_grad_passes<T>(forward, g, input_is_big, a.x, a.dy, prologue, a.dkernel, a.dbias,
                            runner);
}

}  // namespace

template <typename T>
void conv2d_forward(const ConvForwardArgs<T>& args, TaskRunner& runner) {
  conv_forward(args, /*input_is_big=*/true, runner);
}
template <typename T>
void conv2d_backward(const ConvBackwardArgs<T>& args, TaskRunner& runner) {
  conv_backward(args, /*input_is_big=*/true, runner);
}
template <typename T>
void conv2d_transpose_forward(const ConvForwardArgs<T>& args, TaskRunner& runner) {
  conv_forward(args, /*input_is_big=*/false, runner);
}
template <typename T>
void conv2d_transpose_backward(const ConvBackwardArgs<T>& args, TaskRunner& runner) {
  conv_backward(args, /*input_is_big=*/false, runner);
}

#define FUSEDLAYERS_INSTANTIATE_CONV(T)                                                  \
  template void conv2d_forward<T>(const ConvForwardArgs<T>&, TaskRunner&);             \
  template void conv2d_backward<T>(const ConvBackwardArgs<T>&, TaskRunner&);           \
  template void conv2d_transpose_forward<T>(const ConvForwardArgs<T>&, TaskRunner&);   \
  template void conv2d_transpose_backward<T>(const ConvBackwardArgs<T>&, TaskRunner&);
FUSEDLAYERS_INSTANTIATE_CONV(float)
FUSEDLAYERS_INSTANTIATE_CONV(double)
FUSEDLAYERS_INSTANTIATE_CONV(bfloat16_t)
FUSEDLAYERS_INSTANTIATE_CONV(float16_t)
#undef FUSEDLAYERS_INSTANTIATE_CONV

}  // namespace fusedlayers
