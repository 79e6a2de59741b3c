// The geometry shared by conv2d and conv2d_transpose. Both relate a "big" NHWC
// tensor (conv2d's input, conv2d_transpose's output) to a "small" one through
//   big index = small index * stride + tap * dilation - pad_before
// on each spatial axis, with one kernel [kh, kw, big channels, small channels] (the
// Keras layouts of both ops coincide). conv2d gathers big -> small and
// conv2d_transpose scatters small -> big: each op's input gradient is the other op.
#pragma once

#include <cstdint>
#include <string>

namespace fusedlayers {

enum class ConvPadding { kValid, kSame };

// Returns false when `name` is neither "valid" nor "same" (lower case, as Keras).
bool conv_padding_from_name(const std::string& name, ConvPadding* out);

struct ConvAxis {
  int64_t big = 0;
  int64_t small = 0;
  int64_t kernel = 1;
  int64_t stride = 1;
  int64_t dilation = 1;
  int64_t pad_before = 0;
};

struct ConvGeometry {
  int64_t batch = 0;
  ConvAxis h, w;
  int64_t big_channels = 0;
  int64_t small_channels = 0;
};

// The per-axis arguments of a call, as the ops receive them.
struct ConvAxisArgs {
  int64_t input = 0;   // the op's input size on this axis
  int64_t kernel = 1;
  int64_t stride = 1;
  int64_t dilation = 1;
  int64_t output_padding = -1;  // conv2d_transpose only; -1 means None
};

// Fills `axis` for conv2d (input = big) by TensorFlow's rules: valid gives
// floor((in - k_eff) / s) + 1, same gives ceil(in / s) with the padding split
// floor(total / 2) before. Returns an error message naming `axis_name`'s argument,
// or "" when the arguments are valid.
std::string conv2d_axis(const ConvAxisArgs& args, ConvPadding padding, const char* axis_name,
                        ConvAxis* axis);

// Fills `axis` for conv2d_transpose (input = small) by Keras 3's output-size rule
// (output_padding None and given differ), padded as TensorFlow's
// Conv2DBackpropInput pads a convolution from that output back to the input.
std::string conv2d_transpose_axis(const ConvAxisArgs& args, ConvPadding padding,
                                  const char* axis_name, ConvAxis* axis);

// The attributes of a call; output_padding only for conv2d_transpose.
struct ConvAttrs {
  int64_t strides[2] = {1, 1};
  int64_t dilations[2] = {1, 1};
  ConvPadding padding = ConvPadding::kValid;
  bool has_output_padding = false;
  int64_t output_padding[2] = {0, 0};
};

// The geometry of conv2d on x [batch, h, w, in] with kernel [kh, kw, in, filters], or
// conv2d_transpose on x [batch, h, w, in] with kernel [kh, kw, filters, in]: every
// rule checked (attributes, channel agreement, sizes, int64 overflow of the
// output's element count). Returns "" or an error message naming the argument.
std::string conv2d_geometry(const int64_t x_shape[4], const int64_t kernel_shape[4],
                            const ConvAttrs& attrs, ConvGeometry* g);
std::string conv2d_transpose_geometry(const int64_t x_shape[4], const int64_t kernel_shape[4],
                                      const ConvAttrs& attrs, ConvGeometry* g);

// The shape of the op's output y: [batch, small h, small w, small C] for conv2d,
// [batch, big h, big w, big C] for conv2d_transpose.
inline void conv2d_output_shape(const ConvGeometry& g, int64_t out[4]) {
  out[0] = g.batch, out[1] = g.h.small, out[2] = g.w.small, out[3] = g.small_channels;
}
inline void conv2d_transpose_output_shape(const ConvGeometry& g, int64_t out[4]) {
  out[0] = g.batch, out[1] = g.h.big, out[2] = g.w.big, out[3] = g.big_channels;
}

// Checks the per-op attribute rules shared by both ops (strides and dilation >= 1,
// not both > 1, output_padding < stride); "" when valid.
std::string check_conv_attrs(const int64_t strides[2], const int64_t dilations[2],
                             const int64_t* output_padding /* 2 values or null */);

}  // namespace fusedlayers
