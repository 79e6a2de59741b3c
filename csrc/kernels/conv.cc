// conv2d and conv2d_transpose on the GEMM engine. Layers whose lowered matrix fits a
// small budget per image (most layers) run the lowered method of conv_lowered.cc;
// larger images run the implicit method here, which never materializes patches,
// from two kinds of pass over one geometry:
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
#include <vector>

#include "conv_lowered.h"
#include "conv_operands.h"
#include "conv_winograd.h"
#include "dense.h"
#include "dtype.h"
#include "parallel.h"

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

template <typename T>
void conv_forward(const ConvForwardArgs<T>& a, bool input_is_big, TaskRunner& runner) {
  const ConvGeometry& g = a.geometry;
  run_forward_passes<T>(input_is_big ? gather_passes(g) : scatter_passes(g), g, input_is_big,
                        a.x, nullptr, a.kernel, a.bias, a.act, a.y, a.z, runner);
}

// The input gradient is the other op's forward applied to dz; the weight gradient
// runs over this op's own forward passes.
template <typename T>
void conv_backward(const ConvBackwardArgs<T>& a, bool input_is_big, TaskRunner& runner) {
  const ConvGeometry& g = a.geometry;
  const ActivationGradPrologue<T> prologue{a.y, a.z, a.act};
  const std::vector<Pass> forward = input_is_big ? gather_passes(g) : scatter_passes(g);
  const std::vector<Pass> adjoint = input_is_big ? scatter_passes(g) : gather_passes(g);
  run_forward_passes<T>(adjoint, g, !input_is_big, a.dy, &prologue, a.kernel, nullptr,
                        ActivationSpec{}, a.dx, nullptr, runner);
  run_weight_grad_passes<T>(forward, g, input_is_big, a.x, a.dy, prologue, a.dkernel, a.dbias,
                            runner);
}

// A convolution whose input has no channel is a product with no depth: over the
// output's positions it is dense with K = 0 (y = act(bias) everywhere, db = dz summed
// per channel, dx and dkernel empty), which dense.cc writes and sums as plain loops
// where the GEMM routes would form empty patches tile by tile.
template <typename T>
DenseForwardArgs<T> as_dense_without_depth(const ConvForwardArgs<T>& a, int64_t positions,
                                           int64_t channels) {
  DenseForwardArgs<T> d;
  d.bias = a.bias;
  d.y = a.y;
  d.z = a.z;
  d.m = positions;
  d.n = channels;
  d.act = a.act;
  return d;
}
template <typename T>
DenseBackwardArgs<T> as_dense_without_depth(const ConvBackwardArgs<T>& a, int64_t positions,
                                            int64_t channels) {
  DenseBackwardArgs<T> d;
  d.dy = a.dy;
  d.y = a.y;
  d.z = a.z;
  d.db = a.dbias;
  d.m = positions;
  d.n = channels;
  d.act = a.act;
  return d;
}
int64_t small_positions(const ConvGeometry& g) { return g.batch * g.h.small * g.w.small; }
int64_t big_positions(const ConvGeometry& g) { return g.batch * g.h.big * g.w.big; }

// A convolution with fewer flops than this a pass runs on the calling thread: waking the
// pool for its phases (im2col, the groups, the weight gradient's waves) costs more than
// the second thread saves. Ops alone in tf.function, elu, two threads -> one, us:
// 2x5x5x3 -> 4 k3 (0.03 Mflop) fwd 85 -> 25, fwd+bwd 213 -> 48; 8x28x28x1 -> 32 k4 s2
// (1.4 Mflop) 116 -> 82 and 386 -> 246; but 32x8x8x16 -> 16 k3 (5.3 Mflop) 136 / 321
// against 131 / 397, and 32x28x28x1 -> 32 k4 s2 (5.5 Mflop) 180 / 646 against 202 / 835.
// Which thread runs a phase never changes its result (conv_groups.h), so the rule keeps
// every convolution deterministic.
constexpr int64_t kMinParallelConvFlops = int64_t(1) << 22;

// The runner a convolution's passes run on: `runner`, or `serial` below
// kMinParallelConvFlops (each pass, forward or backward, multiplies every small position's
// channels by the kernel's taps and big channels once).
TaskRunner& conv_runner(const ConvGeometry& g, TaskRunner& runner, SerialRunner& serial) {
  const int64_t flops =
      2 * small_positions(g) * g.small_channels * g.h.kernel * g.w.kernel * g.big_channels;
  return flops < kMinParallelConvFlops ? serial : runner;
}

}  // namespace

// Each op takes the lowered method when its lowered matrix is small enough per image
// (conv_lowered.h), and the implicit passes above otherwise; float32 passes take
// Winograd's algorithm first where it saves enough (conv_winograd.h).
template <typename T>
void conv2d_forward(const ConvForwardArgs<T>& args, TaskRunner& pool) {
  const ConvGeometry& g = args.geometry;
  SerialRunner serial;
  TaskRunner& runner = conv_runner(g, pool, serial);
  if (g.big_channels == 0) {
    return dense_forward(as_dense_without_depth(args, small_positions(g), g.small_channels),
                         runner);
  }
  if constexpr (std::is_same_v<T, float>) {
    if (conv_winograd_fits(g)) return winograd_conv2d_forward(args, runner);
  }
  if (conv_lowered_fits(g)) return lowered_conv2d_forward(args, runner);
  conv_forward(args, /*input_is_big=*/true, runner);
}
template <typename T>
void conv2d_backward(const ConvBackwardArgs<T>& args, TaskRunner& pool) {
  const ConvGeometry& g = args.geometry;
  SerialRunner serial;
  TaskRunner& runner = conv_runner(g, pool, serial);
  if (g.big_channels == 0) {
    return dense_backward(as_dense_without_depth(args, small_positions(g), g.small_channels),
                          runner);
  }
  if constexpr (std::is_same_v<T, float>) {
    if (conv_winograd_fits(g)) return winograd_conv2d_backward(args, runner);
  }
  if (conv_lowered_fits(g)) return lowered_conv2d_backward(args, runner);
  conv_backward(args, /*input_is_big=*/true, runner);
}
template <typename T>
void conv2d_transpose_forward(const ConvForwardArgs<T>& args, TaskRunner& pool) {
  const ConvGeometry& g = args.geometry;
  SerialRunner serial;
  TaskRunner& runner = conv_runner(g, pool, serial);
  if (g.small_channels == 0) {
    return dense_forward(as_dense_without_depth(args, big_positions(g), g.big_channels), runner);
  }
  if constexpr (std::is_same_v<T, float>) {
    if (conv_winograd_fits(g)) return winograd_conv2d_transpose_forward(args, runner);
  }
  if (conv_lowered_fits(g)) return lowered_conv2d_transpose_forward(args, runner);
  conv_forward(args, /*input_is_big=*/false, runner);
}
template <typename T>
void conv2d_transpose_backward(const ConvBackwardArgs<T>& args, TaskRunner& pool) {
  const ConvGeometry& g = args.geometry;
  SerialRunner serial;
  TaskRunner& runner = conv_runner(g, pool, serial);
  if (g.small_channels == 0) {
    return dense_backward(as_dense_without_depth(args, big_positions(g), g.big_channels),
                          runner);
  }
  if constexpr (std::is_same_v<T, float>) {
    if (conv_winograd_fits(g)) return winograd_conv2d_transpose_backward(args, runner);
  }
  if (conv_lowered_fits(g)) return lowered_conv2d_transpose_backward(args, runner);
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
