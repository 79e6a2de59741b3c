// Convolutions by explicit lowering. For a group of images, the lowered matrix
//   L[small position, (tap, big channel)] = the big tensor where that tap reaches
//                                           from that position (zero in the padding)
// is built by im2col; its adjoint, col2im, adds each entry of such a matrix back into
// the big pixel it came from. With the kernel [kh, kw, big C, small C] read as the
// row-major matrix K[(tap, big C), small C], every product is a plain GEMM whose
// operands the engine packs with its vectorized loops, with N (small C, or taps x big
// C) keeping micro-tiles full even for layers with one or three channels, where the
// implicit method (conv.cc) spends its time gathering patches into panels:
//   conv2d             forward  y  = act(L(x) K + bias)
//                      input    dx = col2im(dz Kᵀ)
//                      weights  [dK; db] = [L(x) 1]ᵀ dz
//   conv2d_transpose   forward  y  = act(bias + col2im(x Kᵀ))
//                      input    dx = L(dz) K
//                      weights  dK = L(dz)ᵀ x, db = dz summed per channel
// dz = dy * act'(y, z) is packed with the engine's prologue when it is the small
// tensor, and materialized per group when it is the big one. A group holds about a
// budget of elements of L and of the big tensor, so memory stays bounded (and a forward
// group's working set stays in one core's L2); with enough groups, each runs whole on
// one thread (for_each_group). Every sum runs in an order fixed by the shape, so
// results do not depend on threads.
#include "conv_lowered.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "column_sums.h"
#include "conv_groups.h"
#include "dtype.h"
#include "gemm_kernels.h"
#include "gemm_operands.h"

namespace fusedlayers {
namespace {

// Elements of L (or of the big tensor) per group of images: 1 MiB of float, so that L,
// the products and the engine's packed panels stay in a 2 MiB L2 (forward, against 4
// MiB groups, two threads, native harness, ms: Conv2D 31x31x32->64 k4 s2 1.95 -> 1.54,
// 64x64x3->32 1.04 -> 0.80, Conv2DTranspose 16x16x128->64 k4 s2 8.9 -> 7.9; backward,
// fwd+bwd in tf.function alternating in one process: Conv2D 64x64x3->32 k4 s2 1.11-1.16x
// and Conv2DTranspose 32x32x64->3 k4 s2 same 1.09-1.10x faster than with 4 MiB).
constexpr int64_t kGroupBudget = int64_t{1} << 18;
// ...but at least this many small positions per group (rows of each product) where
// one image's size allows (kMaxImageElements): in the forward, every group packs the
// whole kernel again (Conv2DTranspose 8x8x256->128 forward, 64 positions an image: 2
// images a group 15.1 ms, 4 images 13.9 ms on one thread); in the backward, each
// group's share of the weight gradient is a product as deep as its positions, written
// whole and added into the sum, which a shallow share pays for in memory traffic
// (groups of at least 1024 positions, or 4 MiB, against 1 MiB with the kernel packed
// per group: Conv2DTranspose 16x16x128->64 22 -> 18 ms, 8x8x256->128 17 -> 16 ms, Conv2D
// 31x31x32->64 5.6 -> 4.6 ms).
constexpr int64_t kForwardMinGroupRows = 256;
constexpr int64_t kBackwardMinGroupRows = 1024;
// The lowered method takes an image whose L (and big tensor) has at most this many
// elements; larger images run the implicit method (conv.cc).
constexpr int64_t kMaxImageElements = int64_t{1} << 20;

// This file's per-thread scratch slots (see packing_scratch).
enum ScratchSlot {
  kLoweredSlot = 3,
  kRowSumsSlot = 4,
  kDzSlot = 5,
  kKernelGradSlot = 6,
  kKernelPanelsSlot = 8
};

// Sizes derived from the geometry; `row` is L's row length and K's row count.
struct Lowering {
  int64_t small_image = 0, big_image = 0;  // pixels per image
  int64_t cb = 0, cs = 0;                  // big and small channels
  int64_t row = 0;                         // taps * cb
  int64_t group = 1;                       // images per group
};

// The sizes of g, in groups of images of about kGroupBudget elements each and at least
// `min_rows` positions where one image's size allows.
Lowering lowering_of(const ConvGeometry& g, int64_t min_rows) {
  Lowering s;
  s.small_image = g.h.small * g.w.small;
  s.big_image = g.h.big * g.w.big;
  s.cb = g.big_channels;
  s.cs = g.small_channels;
  s.row = g.h.kernel * g.w.kernel * s.cb;
  const int64_t per_image = std::max({s.small_image * s.row, s.big_image * s.cb, int64_t{1}});
  const int64_t for_rows = std::min(ceil_div(min_rows, std::max<int64_t>(s.small_image, 1)),
                                    kMaxImageElements / per_image);
  s.group = images_per_group(g.batch, std::max(kGroupBudget / per_image, for_rows));
  return s;
}

// Small index j's taps [lo, hi) that land inside the big axis; tap t lands at
// b0 + t * dilation.
struct TapRange {
  int64_t b0 = 0, lo = 0, hi = 0;
};

TapRange tap_range(const ConvAxis& a, int64_t j) {
  TapRange r;
  r.b0 = j * a.stride - a.pad_before;
  r.hi = std::clamp<int64_t>((a.big - r.b0 + a.dilation - 1) / a.dilation, 0, a.kernel);
  r.lo = std::min(r.b0 >= 0 ? 0 : (-r.b0 + a.dilation - 1) / a.dilation, r.hi);
  return r;
}

// tap_range of every small index, computed once per im2col or col2im call rather than
// per small row and position (two divisions each, beside a copy of 12 floats for a
// 3-channel image: Conv2D 64x64x3->32 k4 s2 forward on one thread 5% faster,
// alternating in one process).
std::vector<TapRange> tap_ranges(const ConvAxis& a) {
  std::vector<TapRange> ranges(a.small);
  for (int64_t j = 0; j < a.small; ++j) ranges[j] = tap_range(a, j);
  return ranges;
}

// dst[e] = src[e] as In for e < count.
template <typename S, typename In>
inline void copy_as(const S* src, int64_t count, In* dst) {
  if constexpr (std::is_same_v<S, In>) {
    std::memcpy(dst, src, count * sizeof(In));
  } else {
    for (int64_t e = 0; e < count; ++e) dst[e] = operand_as<In>(src[e]);
  }
}

// The small positions [begin, end) along w whose taps are all in range and one run
// (dilation 1): a contiguous range, as both ends of a position's taps move with it.
struct FullRuns {
  int64_t begin = 0, end = 0;
};

FullRuns full_runs(const ConvAxis& a, const std::vector<TapRange>& ranges) {
  FullRuns f;
  if (a.dilation != 1) return f;
  const auto full = [&](int64_t j) { return ranges[j].lo == 0 && ranges[j].hi == a.kernel; };
  while (f.begin < a.small && !full(f.begin)) ++f.begin;
  f.end = f.begin;
  while (f.end < a.small && full(f.end)) ++f.end;
  return f;
}

// L for `images` images whose big tensor starts at `big`, stored as the GEMM's operand
// type In; one task per small row, kernel row by kernel row: the positions with every
// tap in range copy their runs in one call of the ISA's copy_runs (a run per position,
// `stride` channels apart in the source and a row of L apart here), the others one by
// one with zeros for their taps out of range. Against positions outer and an element
// loop per run (a 3-channel image's run of 4 taps is 12 floats, where the loop's setup
// cost as much as the copy), native harness alternating in one process, forward:
// Conv2D 64x64x3->32 k4 s2 1.89 -> 1.52 ms on one thread, 1.47 -> 1.06 ms on two;
// 28x28x1->32 0.214 -> 0.163 ms; 31x31x32->64 4.72 -> 4.49 ms.
template <typename S, typename In>
void im2col(const ConvGeometry& g, const Lowering& s, const S* big, int64_t images, In* lowered,
            TaskRunner& runner) {
  const int64_t kernel_row = g.w.kernel * s.cb;  // one kernel row's taps in L
  const std::vector<TapRange> w_ranges = tap_ranges(g.w);
  FullRuns runs = full_runs(g.w, w_ranges);
  CopyRunsFn<In> copy_runs = nullptr;
  if constexpr (std::is_same_v<S, In>) copy_runs = micro_kernel<In>().copy_runs;
  if (!copy_runs) runs = FullRuns{};  // every position one by one
  runner.run(images * g.h.small, [&](int64_t task) {
    const int64_t image = task / g.h.small, hs = task - image * g.h.small;
    const S* img = big + image * s.big_image * s.cb;
    for (int64_t th = 0; th < g.h.kernel; ++th) {
      const int64_t hb = hs * g.h.stride + th * g.h.dilation - g.h.pad_before;
      In* const out = lowered + task * g.w.small * s.row + th * kernel_row;
      if (hb < 0 || hb >= g.h.big) {
        for (int64_t ws = 0; ws < g.w.small; ++ws)
          std::fill(out + ws * s.row, out + ws * s.row + kernel_row, In{});
        continue;
      }
      const S* src_row = img + hb * g.w.big * s.cb;
      if constexpr (std::is_same_v<S, In>) {
        if (runs.end > runs.begin)
          copy_runs(src_row + w_ranges[runs.begin].b0 * s.cb, g.w.stride * s.cb,
                    runs.end - runs.begin, kernel_row, out + runs.begin * s.row, s.row);
      }
      // The positions before and after the runs copied above, with zeros for taps out
      // of range.
      const auto copy_position = [&](int64_t ws) {
        const TapRange& w = w_ranges[ws];
        In* o = out + ws * s.row;
        std::fill(o, o + w.lo * s.cb, In{});
        if (g.w.dilation == 1) {  // the taps in range are one contiguous run
          copy_as(src_row + (w.b0 + w.lo) * s.cb, (w.hi - w.lo) * s.cb, o + w.lo * s.cb);
        } else {
          for (int64_t tw = w.lo; tw < w.hi; ++tw)
            copy_as(src_row + (w.b0 + tw * g.w.dilation) * s.cb, s.cb, o + tw * s.cb);
        }
        std::fill(o + w.hi * s.cb, o + kernel_row, In{});
      };
      for (int64_t ws = 0; ws < runs.begin; ++ws) copy_position(ws);
      for (int64_t ws = runs.end; ws < g.w.small; ++ws) copy_position(ws);
    }
  });
}

// The (tap, small index) pairs that reach each index of the big axis, in tap order.
struct AxisReach {
  std::vector<int64_t> begin;  // big index b's pairs: [begin[b], begin[b + 1])
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

// sums[big w, :] += the entries of one small row and kernel row of L-shaped `p_row`
// (small w, tap w, channel): each small position adds its taps to the big positions
// they reach, one contiguous run of taps x channels for dilation 1.
template <typename Acc>
void add_row_taps(const ConvAxis& w, const std::vector<TapRange>& w_ranges, const Lowering& s,
                  const Acc* p_row, Acc* sums) {
  for (int64_t ws = 0; ws < w.small; ++ws) {
    const TapRange& r = w_ranges[ws];
    const Acc* src = p_row + ws * s.row;
    if (w.dilation == 1) {
      const int64_t base = r.b0 * s.cb;  // negative at the left edge, where lo > 0
      for (int64_t e = r.lo * s.cb; e < r.hi * s.cb; ++e) sums[base + e] += src[e];
      continue;
    }
    for (int64_t t = r.lo; t < r.hi; ++t) {
      Acc* dst = sums + (r.b0 + t * w.dilation) * s.cb;
      for (int64_t c = 0; c < s.cb; ++c) dst[c] += src[t * s.cb + c];
    }
  }
}

// out = act(bias + col2im(p)) for `images` images from n0 (z, when set, gets the
// pre-activation); one task per big row, whose sums the activation sees at once.
template <typename T, typename Acc>
void col2im_bias_act(const ConvGeometry& g, const Lowering& s, const AxisReach& reach_h,
                     const Acc* p, int64_t n0, int64_t images, const T* bias, ActivationSpec act,
                     T* out, T* z, TaskRunner& runner) {
  const std::vector<TapRange> w_ranges = tap_ranges(g.w);
  runner.run(images * g.h.big, [&](int64_t task) {
    const int64_t image = task / g.h.big, hb = task - image * g.h.big;
    Acc* sums = packing_scratch<Acc, kRowSumsSlot>(g.w.big * s.cb);
    for (int64_t wb = 0; wb < g.w.big; ++wb)
      for (int64_t c = 0; c < s.cb; ++c) sums[wb * s.cb + c] = bias ? load_as<Acc>(bias[c]) : Acc(0);
    for (int64_t ih = reach_h.begin[hb]; ih < reach_h.begin[hb + 1]; ++ih) {
      const Acc* p_row = p + (image * g.h.small + reach_h.small[ih]) * g.w.small * s.row +
                         reach_h.tap[ih] * g.w.kernel * s.cb;
      add_row_taps<Acc>(g.w, w_ranges, s, p_row, sums);
    }
    const int64_t px = ((n0 + image) * s.big_image + hb * g.w.big) * s.cb;
    epilogue_bias_act<T, Acc>(sums, 0, 1, g.w.big * s.cb, static_cast<const T*>(nullptr), 0, act,
                              out + px, 0, z ? z + px : nullptr);
  });
}

// dz = dy * act'(y, z) for `count` elements from `offset` into this thread's scratch, for
// the Conv2D backward's two products, where they pack operands as Acc; null where dz is
// dy itself (linear) or the products pack bfloat16 pairs (the prologue forms dz while
// packing). Both products then read plain operands (dx's A in place, dK's B packed with
// no derivative), where the prologue packed dy and y twice each, transposing them for
// dx. Backward, elu, one thread, native harness alternating in one process: Conv2D
// 64x64x3->32 k4 s2 5.46 -> 4.28 ms, 28x28x1->32 0.50 -> 0.43 ms, 13x13x32->64 1.42 ->
// 1.35 ms, 31x31x32->64 10.7 -> 10.1 ms.
template <typename T, typename In>
const acc_t<T>* materialized_dz(const ActivationGradPrologue<T>& pro, const T* dy, int64_t offset,
                                int64_t count, TaskRunner& runner) {
  using Acc = acc_t<T>;
  if (!std::is_same_v<In, Acc> || pro.act.kind == Activation::kLinear) return nullptr;
  Acc* dz = packing_scratch<Acc, kDzSlot>(count);
  activation_grad<T, Acc>(pro, dy, offset, count, dz, runner);
  return dz;
}

// sums[c] += dz's channel c over `pixels` pixels, per image then in image order.
template <typename Acc>
void add_channel_sums(const Acc* dz, int64_t images, int64_t pixels_per_image, int64_t channels,
                      Acc* sums, TaskRunner& runner) {
  std::vector<Acc> partial(images * channels, Acc(0));
  runner.run(images, [&](int64_t image) {
    Acc* part = partial.data() + image * channels;
    add_column_sums(dz + image * pixels_per_image * channels, pixels_per_image, channels, part);
  });
  for (int64_t image = 0; image < images; ++image)
    for (int64_t c = 0; c < channels; ++c) sums[c] += partial[image * channels + c];
}

int64_t group_count(const ConvGeometry& g, const Lowering& s) {
  return ceil_div(g.batch, s.group);
}

bool groups_in_parallel(const ConvGeometry& g, const Lowering& s, const TaskRunner& runner) {
  return groups_in_parallel(group_count(g, s), runner);
}

// Packing the kernel once is a phase of its own, ending on a barrier across the threads:
// it pays where the groups would otherwise pack at least this many more kernel elements
// than one pack per thread (Conv2D 5x5x64->128 k4 s2, two groups on two threads: 0.33
// ms packing per group, 0.46 ms packing once).
constexpr int64_t kMinRepackedElements = int64_t{1} << 18;

// The kernel as B (rows x depth, strided), packed once for every group's product where
// that pays (each group packed it again: Conv2DTranspose 8x8x256->128 forward, one
// thread, 15.1 -> 13.2 ms; 16x16x128->64 16.4 -> 13.9 ms), into the calling thread's
// scratch.
template <typename T, typename In>
PackSource<In> kernel_source(const ConvGeometry& g, const Lowering& s, const T* kernel,
                             int64_t rows, int64_t depth, int64_t row_stride,
                             int64_t depth_stride, TaskRunner& runner) {
  PackSource<In> b = strided_source<T, In>(kernel, rows, depth, row_stride, depth_stride);
  const int64_t packs_at_once = groups_in_parallel(g, s, runner) ? runner.num_threads() : 1;
  if ((group_count(g, s) - packs_at_once) * rows * depth < kMinRepackedElements) return b;
  In* panels = packing_scratch<In, kKernelPanelsSlot>(packed_b_size(b));
  pack_b_once<In>(b, panels, runner);
  b.packed = panels;
  return b;
}

template <typename T>
ActivationGradPrologue<T> shifted(const ActivationGradPrologue<T>& pro, int64_t offset) {
  ActivationGradPrologue<T> out = pro;
  if (out.y) out.y += offset;
  if (out.z) out.z += offset;
  return out;
}

}  // namespace

ConvMethod forced_conv_method() {
  static const ConvMethod forced = [] {
    const char* name = std::getenv("FUSEDLAYERS_CONV_METHOD");
    if (!name || !*name) return ConvMethod::kByShape;
    if (std::strcmp(name, "lowered") == 0) return ConvMethod::kLowered;
    if (std::strcmp(name, "implicit") == 0) return ConvMethod::kImplicit;
    if (std::strcmp(name, "winograd") == 0) return ConvMethod::kWinograd;
    std::fprintf(stderr,
                 "fusedlayers: FUSEDLAYERS_CONV_METHOD must be lowered, implicit or winograd; "
                 "got '%s', choosing by shape\n",
                 name);
    return ConvMethod::kByShape;
  }();
  return forced;
}

bool conv_lowered_fits(const ConvGeometry& g) {
  const ConvMethod forced = forced_conv_method();
  if (forced == ConvMethod::kLowered) return true;
  if (forced == ConvMethod::kImplicit) return false;
  // In double: the products of a huge (rejected-later-anyway) shape must not wrap.
  const double lowered =
      double(g.h.small) * double(g.w.small) * double(g.h.kernel) * double(g.w.kernel) *
      double(g.big_channels);
  const double big = double(g.h.big) * double(g.w.big) * double(g.big_channels);
  return std::max(lowered, big) <= double(kMaxImageElements);
}

// Each pass below packs its operands as In (see with_packed_type): L is built as In,
// products are summed in Acc, and a buffer both summed in and rebuilt as L is one
// buffer when In is Acc, two (per type) otherwise.
template <typename T, typename In>
void lowered_conv2d_forward_as(const ConvForwardArgs<T>& a, TaskRunner& runner) {
  using Acc = acc_t<T>;
  const ConvGeometry& g = a.geometry;
  const Lowering s = lowering_of(g, kForwardMinGroupRows);
  const auto k_cols = kernel_source<T, In>(g, s, a.kernel, s.cs, s.row, 1, s.cs, runner);  // Kᵀ
  for_each_group(g.batch, s.group, runner, [&](int64_t n0, int64_t images, TaskRunner& runner) {
    In* lowered = packing_scratch<In, kLoweredSlot>(s.group * s.small_image * s.row);
    im2col<T, In>(g, s, a.x + n0 * s.big_image * s.cb, images, lowered, runner);
    const auto l_rows = strided_source<In, In>(lowered, images * s.small_image, s.row, s.row, 1);
    const int64_t first = n0 * s.small_image * s.cs;
    T* y = a.y + first;
    T* z = a.z ? a.z + first : nullptr;
    gemm<In>(l_rows, k_cols,
              [&](int64_t i0, int64_t mi, int64_t j0, int64_t nj, const Acc* tile, int64_t ld) {
                const int64_t off = i0 * s.cs + j0;
                epilogue_bias_act<T, Acc>(tile, ld, mi, nj, a.bias, j0, a.act, y + off, s.cs,
                                          z ? z + off : nullptr);
              },
              runner, output_accumulator<T, Acc>(y, s.cs));
  });
}

template <typename T, typename In>
void lowered_conv2d_backward_as(const ConvBackwardArgs<T>& a, TaskRunner& runner) {
  using Acc = acc_t<T>;
  const ConvGeometry& g = a.geometry;
  const Lowering s = lowering_of(g, kBackwardMinGroupRows);
  const AxisReach reach_h = axis_reach(g.h);
  const ActivationGradPrologue<T> prologue{a.y, a.z, a.act};
  const bool with_bias = a.dbias != nullptr;
  const auto k_rows = kernel_source<T, In>(g, s, a.kernel, s.row, s.cs, s.cs, 1, runner);  // K
  const int64_t dk_rows = s.row + (with_bias ? 1 : 0);
  Acc* dk = packing_scratch<Acc, kKernelGradSlot>(dk_rows * s.cs);
  for_each_group_summing<Acc>(g.batch, s.group, runner, dk_rows * s.cs, dk, [&](int64_t n0, int64_t images,
                                                                     TaskRunner& runner, Acc* dk) {
    const int64_t positions = images * s.small_image;
    Acc* products = packing_scratch<Acc, kLoweredSlot>(s.group * s.small_image * s.row);
    In* lowered = packing_scratch<In, kLoweredSlot>(s.group * s.small_image * s.row);
    const int64_t off = n0 * s.small_image * s.cs;
    const ActivationGradPrologue<T> pro = shifted(prologue, off);
    const Acc* dz = materialized_dz<T, In>(prologue, a.dy, off, positions * s.cs, runner);
    // dz's rows (positions x cs) or, transposed, its columns: from dz where materialized,
    // else formed by the prologue while packing.
    const auto dz_operand = [&](bool transposed) {
      const int64_t rows = transposed ? s.cs : positions, depth = transposed ? positions : s.cs;
      const int64_t row_stride = transposed ? 1 : s.cs, depth_stride = transposed ? s.cs : 1;
      if constexpr (std::is_same_v<In, Acc>) {
        if (dz) return strided_source<Acc, In>(dz, rows, depth, row_stride, depth_stride);
      }
      return strided_source<T, In>(a.dy + off, rows, depth, row_stride, depth_stride, &pro);
    };
    // dx = col2im(dz Kᵀ), the product summed in L's buffer (when In is Acc).
    gemm<In>(dz_operand(false), k_rows, {}, runner, GemmAccumulator<Acc>{products, s.row});
    col2im_bias_act<T, Acc>(g, s, reach_h, products, n0, images, nullptr, ActivationSpec{}, a.dx,
                            nullptr, runner);
    // the group's [dK; db] = [L(x) 1]ᵀ dz, stored whole into its share
    im2col<T, In>(g, s, a.x + n0 * s.big_image * s.cb, images, lowered, runner);
    const auto lt = strided_source<In, In>(lowered, s.row, positions, 1, s.row, nullptr, with_bias);
    gemm_split_depth<In>(lt, dz_operand(true), {}, runner, GemmAccumulator<Acc>{dk, s.cs});
  });
  store_run(dk, s.row * s.cs, a.dkernel);
  if (with_bias) store_run(dk + s.row * s.cs, s.cs, a.dbias);
}

template <typename T, typename In>
void lowered_conv2d_transpose_forward_as(const ConvForwardArgs<T>& a, TaskRunner& runner) {
  using Acc = acc_t<T>;
  const ConvGeometry& g = a.geometry;
  const Lowering s = lowering_of(g, kForwardMinGroupRows);
  const AxisReach reach_h = axis_reach(g.h);
  const auto k_rows = kernel_source<T, In>(g, s, a.kernel, s.row, s.cs, s.cs, 1, runner);  // K
  for_each_group(g.batch, s.group, runner, [&](int64_t n0, int64_t images, TaskRunner& runner) {
    Acc* p = packing_scratch<Acc, kLoweredSlot>(s.group * s.small_image * s.row);
    const auto x_rows = strided_source<T, In>(a.x + n0 * s.small_image * s.cs,
                                              images * s.small_image, s.cs, s.cs, 1);
    gemm<In>(x_rows, k_rows, {}, runner, GemmAccumulator<Acc>{p, s.row});
    col2im_bias_act<T, Acc>(g, s, reach_h, p, n0, images, a.bias, a.act, a.y, a.z, runner);
  });
}

template <typename T, typename In>
void lowered_conv2d_transpose_backward_as(const ConvBackwardArgs<T>& a, TaskRunner& runner) {
  using Acc = acc_t<T>;
  const ConvGeometry& g = a.geometry;
  const Lowering s = lowering_of(g, kBackwardMinGroupRows);
  const ActivationGradPrologue<T> prologue{a.y, a.z, a.act};
  const auto k_cols = kernel_source<T, In>(g, s, a.kernel, s.cs, s.row, 1, s.cs, runner);  // Kᵀ
  // [dK; db]
  const int64_t dk_count = s.row * s.cs + s.cb;
  Acc* dk = packing_scratch<Acc, kKernelGradSlot>(dk_count);
  for_each_group_summing<Acc>(g.batch, s.group, runner, dk_count, dk, [&](int64_t n0, int64_t images,
                                                               TaskRunner& runner, Acc* dk) {
    const int64_t positions = images * s.small_image;
    In* lowered = packing_scratch<In, kLoweredSlot>(s.group * s.small_image * s.row);
    Acc* dz = packing_scratch<Acc, kDzSlot>(s.group * s.big_image * s.cb);
    Acc* db = dk + s.row * s.cs;
    activation_grad<T, Acc>(prologue, a.dy, n0 * s.big_image * s.cb, images * s.big_image * s.cb,
                            dz, runner);
    std::fill(db, db + s.cb, Acc(0));  // the share is not zeroed (dK is stored whole)
    if (a.dbias) add_channel_sums<Acc>(dz, images, s.big_image, s.cb, db, runner);
    im2col<Acc, In>(g, s, dz, images, lowered, runner);
    // dx = L(dz) K
    const auto l_rows = strided_source<In, In>(lowered, positions, s.row, s.row, 1);
    T* dx = a.dx + n0 * s.small_image * s.cs;
    gemm<In>(l_rows, k_cols, store_into<T, Acc>(dx, s.cs), runner,
             output_accumulator<T, Acc>(dx, s.cs));
    // the group's dK = L(dz)ᵀ x, stored whole into its share
    const auto lt = strided_source<In, In>(lowered, s.row, positions, 1, s.row);
    const auto xt = strided_source<T, In>(a.x + n0 * s.small_image * s.cs, s.cs, positions, 1,
                                          s.cs);
    gemm_split_depth<In>(lt, xt, {}, runner, GemmAccumulator<Acc>{dk, s.cs});
  });
  store_run(dk, s.row * s.cs, a.dkernel);
  if (a.dbias) store_run(dk + s.row * s.cs, s.cb, a.dbias);
}

namespace {

// How many rows of the lowered products use each kernel element: every small position
// of the batch (with_packed_type's `reuse`).
int64_t kernel_reuse(const ConvGeometry& g) { return g.batch * g.h.small * g.w.small; }

}  // namespace

template <typename T>
void lowered_conv2d_forward(const ConvForwardArgs<T>& a, TaskRunner& runner) {
  with_packed_type<T>(kernel_reuse(a.geometry), [&](auto packed) {
    lowered_conv2d_forward_as<T, typename decltype(packed)::type>(a, runner);
  });
}

template <typename T>
void lowered_conv2d_backward(const ConvBackwardArgs<T>& a, TaskRunner& runner) {
  with_packed_type<T>(kernel_reuse(a.geometry), [&](auto packed) {
    lowered_conv2d_backward_as<T, typename decltype(packed)::type>(a, runner);
  });
}

template <typename T>
void lowered_conv2d_transpose_forward(const ConvForwardArgs<T>& a, TaskRunner& runner) {
  with_packed_type<T>(kernel_reuse(a.geometry), [&](auto packed) {
    lowered_conv2d_transpose_forward_as<T, typename decltype(packed)::type>(a, runner);
  });
}

template <typename T>
void lowered_conv2d_transpose_backward(const ConvBackwardArgs<T>& a, TaskRunner& runner) {
  with_packed_type<T>(kernel_reuse(a.geometry), [&](auto packed) {
    lowered_conv2d_transpose_backward_as<T, typename decltype(packed)::type>(a, runner);
  });
}

#define FUSEDLAYERS_INSTANTIATE_LOWERED(T)                                                     \
  template void lowered_conv2d_forward<T>(const ConvForwardArgs<T>&, TaskRunner&);           \
  template void lowered_conv2d_backward<T>(const ConvBackwardArgs<T>&, TaskRunner&);         \
  template void lowered_conv2d_transpose_forward<T>(const ConvForwardArgs<T>&, TaskRunner&); \
  template void lowered_conv2d_transpose_backward<T>(const ConvBackwardArgs<T>&, TaskRunner&);
FUSEDLAYERS_INSTANTIATE_LOWERED(float)
FUSEDLAYERS_INSTANTIATE_LOWERED(double)
FUSEDLAYERS_INSTANTIATE_LOWERED(bfloat16_t)
FUSEDLAYERS_INSTANTIATE_LOWERED(float16_t)
#undef FUSEDLAYERS_INSTANTIATE_LOWERED

}  // namespace fusedlayers
