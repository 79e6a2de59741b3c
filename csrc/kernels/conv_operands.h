// Packing sources for convolutions as implicit GEMMs: patches of an NHWC tensor are
// gathered straight into the engine's packed panels (zeros where a tap falls in the
// padding), so no im2col buffer ever exists, and kernel taps are read in place.
#pragma once

#include <algorithm>
#include <cstdint>

#include "gemm_operands.h"

namespace fusedlayers {

// One spatial axis of a patch view: grid position g and tap t read source index
// g * grid_step + t * tap_step + offset, and zero when that falls outside [0, source).
struct PatchAxis {
  int64_t grid = 0;
  int64_t taps = 1;
  int64_t grid_step = 1;
  int64_t tap_step = 0;
  int64_t offset = 0;
  int64_t source = 0;
};

// An NHWC tensor [batch, h.source, w.source, channels] seen through a grid of
// positions (n, gh, gw), each with taps (th, tw) x channels. With a prologue, every
// element read is dy * act'(.) (y and z laid out as data).
template <typename T>
struct PatchView {
  const T* data = nullptr;
  int64_t batch = 0;
  int64_t channels = 0;
  PatchAxis h, w;
  bool has_prologue = false;
  ActivationGradPrologue<T> prologue;

  int64_t positions() const { return batch * h.grid * w.grid; }
  int64_t taps() const { return h.taps * w.taps; }

  // Where grid position `pos` reads: its image's first pixel and the source index of
  // tap (0, 0) on each axis (decoded once per position, not per tap).
  struct Origin {
    int64_t image, h, w;
  };
  Origin origin(int64_t pos) const {
    const int64_t n = pos / (h.grid * w.grid), hw = pos - n * h.grid * w.grid;
    const int64_t gh = hw / w.grid, gw = hw - gh * w.grid;
    return {n * h.source * w.source, gh * h.grid_step + h.offset, gw * w.grid_step + w.offset};
  }

  // Offset of the first channel of tap (th, tw) seen from `o`, or -1 in the padding.
  int64_t pixel(const Origin& o, int64_t th, int64_t tw) const {
    const int64_t sh = o.h + th * h.tap_step, sw = o.w + tw * w.tap_step;
    if (sh < 0 || sh >= h.source || sw < 0 || sw >= w.source) return -1;
    return (o.image + sh * w.source + sw) * channels;
  }

  // Calls f(pixel, first channel, count, index) for the runs of one tap's channels
  // that cover (tap, channel) indices [begin, end) of the position at `o`.
  template <typename F>
  void for_each_run(const Origin& o, int64_t begin, int64_t end, F&& f) const {
    const int64_t tap = begin / channels;
    int64_t c = begin - tap * channels, th = tap / w.taps, tw = tap - th * w.taps;
    for (int64_t i = begin; i < end; c = 0) {
      const int64_t run = std::min(channels - c, end - i);
      f(pixel(o, th, tw), c, run, i);
      i += run;
      if (++tw == w.taps) tw = 0, ++th;
    }
  }

  // Writes channels [c, c + run) of `px` (or zeros for px < 0) to out[e * stride].
  template <typename Acc>
  void load_channels(int64_t px, int64_t c, int64_t run, Acc* out, int64_t stride) const {
    if (px < 0) {
      for (int64_t e = 0; e < run; ++e) out[e * stride] = Acc(0);
      return;
    }
    fusedlayers::load_run(data, px + c, 1, run, has_prologue ? &prologue : nullptr, out, stride);
  }
};

// Rows = grid positions, depth = (tap, channel): the A operand of a convolution's
// forward (each row one output position's receptive field).
template <typename T, typename Acc>
PackSource<Acc> patch_rows_source(const PatchView<T>& view) {
  PackSource<Acc> src;
  src.rows = view.positions();
  src.depth = view.taps() * view.channels;
  src.pack = [view](int64_t r0, int64_t nr, int64_t d0, int64_t nd, int panel, Acc* dst) {
    for (int64_t pr = 0; pr < nr; pr += panel) {
      Acc* panel_dst = dst + pr * nd;
      for (int rr = 0; rr < panel; ++rr) {
        Acc* out = panel_dst + rr;
        if (pr + rr >= nr) {
          for (int64_t d = 0; d < nd; ++d) out[d * panel] = Acc(0);
          continue;
        }
        view.for_each_run(view.origin(r0 + pr + rr), d0, d0 + nd,
                          [&](int64_t px, int64_t c, int64_t run, int64_t d) {
                            view.load_channels(px, c, run, out + (d - d0) * panel, panel);
                          });
      }
    }
  };
  return src;
}

// Rows = (tap, channel), plus a row of ones when `ones_row`; depth = grid positions:
// the operands of a weight gradient, whose GEMM sums over positions. The ones row
// turns the product with dz into dz's channel sums: the bias gradient.
template <typename T, typename Acc>
PackSource<Acc> patch_depth_source(const PatchView<T>& view, bool ones_row) {
  PackSource<Acc> src;
  const int64_t real_rows = view.taps() * view.channels;
  src.rows = real_rows + (ones_row ? 1 : 0);
  src.depth = view.positions();
  src.pack = [view, real_rows](int64_t r0, int64_t nr, int64_t d0, int64_t nd, int panel,
                               Acc* dst) {
    const int64_t padded = (nr + panel - 1) / panel * panel;
    for (int64_t d = d0; d < d0 + nd; ++d) {
      Acc* col = dst + (d - d0) * panel;
      // Row r0 + i lands at col[(i / panel) * panel * nd + i % panel].
      auto at = [&](int64_t i) -> Acc* { return col + (i / panel) * panel * nd + i % panel; };
      const int64_t real_end = std::min(r0 + nr, real_rows);
      if (r0 < real_end) {
        view.for_each_run(view.origin(d), r0, real_end,
                          [&](int64_t px, int64_t c, int64_t run, int64_t r) {
                            // A run crosses a few panels: split it where a panel ends.
                            for (int64_t e = 0; e < run;) {
                              const int64_t i = r + e - r0;
                              const int64_t chunk = std::min(run - e, panel - i % panel);
                              view.load_channels(px, c + e, chunk, at(i), 1);
                              e += chunk;
                            }
                          });
      }
      for (int64_t r = std::max(r0, real_end); r < r0 + nr; ++r) *at(r - r0) = Acc(1);  // ones
      for (int64_t i = nr; i < padded; ++i) *at(i) = Acc(0);
    }
  };
  return src;
}

// A kernel [kh, kw, big C, small C] read as rows = output channels, depth = (tap,
// input channel), tap (th, tw) being kernel element (h.first + th * h.step,
// w.first + tw * w.step): the B operand of a forward pass, read in place.
template <typename T>
struct KernelTaps {
  const T* kernel = nullptr;
  int64_t kernel_w = 0;    // the kernel's full width
  int64_t tap_size = 0;    // big C * small C
  int64_t first_h = 0, step_h = 1, taps_h = 0;
  int64_t first_w = 0, step_w = 1, taps_w = 0;
  int64_t in_channels = 0, in_stride = 0;    // the channel that is summed over
  int64_t out_channels = 0, out_stride = 0;  // the channel that is produced

  int64_t tap_offset(int64_t tap) const {
    const int64_t th = tap / taps_w, tw = tap - th * taps_w;
    return ((first_h + th * step_h) * kernel_w + first_w + tw * step_w) * tap_size;
  }
};

template <typename T, typename Acc>
PackSource<Acc> kernel_taps_source(const KernelTaps<T>& k) {
  PackSource<Acc> src;
  src.rows = k.out_channels;
  src.depth = k.taps_h * k.taps_w * k.in_channels;
  src.pack = [k](int64_t r0, int64_t nr, int64_t d0, int64_t nd, int panel, Acc* dst) {
    for (int64_t pr = 0; pr < nr; pr += panel) {
      Acc* panel_dst = dst + pr * nd;
      for (int rr = 0; rr < panel; ++rr) {
        Acc* out = panel_dst + rr;
        if (pr + rr >= nr) {
          for (int64_t d = 0; d < nd; ++d) out[d * panel] = Acc(0);
          continue;
        }
        const T* row = k.kernel + (r0 + pr + rr) * k.out_stride;
        int64_t tap = d0 / k.in_channels, c = d0 - tap * k.in_channels;
        for (int64_t d = d0; d < d0 + nd; ++tap, c = 0) {
          const int64_t run = std::min(k.in_channels - c, d0 + nd - d);
          load_run<Acc, T>(row, k.tap_offset(tap) + c * k.in_stride, k.in_stride, run, nullptr,
                           out + (d - d0) * panel, panel);
          d += run;
        }
      }
    }
  };
  return src;
}

}  // namespace fusedlayers
