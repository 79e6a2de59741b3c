// Output sizes and padding of conv2d and conv2d_transpose, with every size checked
// for int64 overflow: the ops accept any int64 shape and must fail cleanly.
#include "conv_geometry.h"

#include <algorithm>

namespace fusedlayers {
namespace {

std::string str(int64_t v) { return std::to_string(v); }

// The dilated kernel extent (k - 1) * d + 1, or "" into *error on overflow.
bool dilated_kernel(const ConvAxisArgs& a, const char* axis_name, int64_t* k_eff,
                    std::string* error) {
  int64_t span;
  if (__builtin_mul_overflow(a.kernel - 1, a.dilation, &span) ||
      __builtin_add_overflow(span, int64_t{1}, k_eff)) {
    *error = std::string("the dilated kernel ") + axis_name + " (" + str(a.kernel) +
             " - 1) * " + str(a.dilation) + " + 1 overflows int64";
    return false;
  }
  return true;
}

std::string check_kernel_size(const ConvAxisArgs& a, const char* axis_name) {
  if (a.kernel < 1) {
    return std::string("kernel's spatial dimensions must be >= 1, got kernel ") + axis_name +
           " " + str(a.kernel);
  }
  return "";
}

// TensorFlow's SAME padding of a convolution from `in` to ceil(in / s) positions.
int64_t same_pad_before(int64_t in, int64_t out, int64_t stride, int64_t k_eff) {
  const int64_t last_window_start_gap = in - (out - 1) * stride;  // in [1, stride]
  return std::max<int64_t>(k_eff - last_window_start_gap, 0) / 2;
}

}  // namespace

bool conv_padding_from_name(const std::string& name, ConvPadding* out) {
  if (name == "valid") {
    *out = ConvPadding::kValid;
  } else if (name == "same") {
    *out = ConvPadding::kSame;
  } else {
    return false;
  }
  return true;
}

std::string check_conv_attrs(const int64_t strides[2], const int64_t dilations[2],
                             const int64_t* output_padding) {
  for (int i = 0; i < 2; ++i) {
    if (strides[i] < 1) {
      return "strides must be >= 1, got [" + str(strides[0]) + ", " + str(strides[1]) + "]";
    }
    if (dilations[i] < 1) {
      return "dilations must be >= 1, got [" + str(dilations[0]) + ", " + str(dilations[1]) +
             "]";
    }
  }
  if (std::max(strides[0], strides[1]) > 1 && std::max(dilations[0], dilations[1]) > 1) {
    return "strides > 1 is not supported together with dilations > 1 (as in Keras), got "
           "strides [" + str(strides[0]) + ", " + str(strides[1]) + "] and dilations [" +
           str(dilations[0]) + ", " + str(dilations[1]) + "]";
  }
  if (output_padding) {
    for (int i = 0; i < 2; ++i) {
      if (output_padding[i] < 0 || output_padding[i] >= strides[i]) {
        return "output_padding must be >= 0 and strictly less than strides, got output_padding [" +
               str(output_padding[0]) + ", " + str(output_padding[1]) + "] with strides [" +
               str(strides[0]) + ", " + str(strides[1]) + "]";
      }
    }
  }
  return "";
}

std::string conv2d_axis(const ConvAxisArgs& a, ConvPadding padding, const char* axis_name,
                        ConvAxis* axis) {
  std::string error = check_kernel_size(a, axis_name);
  if (!error.empty()) return error;
  int64_t k_eff;
  if (!dilated_kernel(a, axis_name, &k_eff, &error)) return error;
  axis->big = a.input;
  axis->kernel = a.kernel;
  axis->stride = a.stride;
  axis->dilation = a.dilation;
  if (padding == ConvPadding::kValid) {
    if (a.input < k_eff) {
      return std::string("padding 'valid' needs the input ") + axis_name + " (" + str(a.input) +
             ") to be at least the dilated kernel " + axis_name + " (" + str(k_eff) +
             "): the output would be empty";
    }
    axis->small = (a.input - k_eff) / a.stride + 1;
    axis->pad_before = 0;
  } else {
    axis->small = a.input / a.stride + (a.input % a.stride != 0);
    axis->pad_before = same_pad_before(a.input, axis->small, a.stride, k_eff);
  }
  return "";
}

std::string conv2d_transpose_axis(const ConvAxisArgs& a, ConvPadding padding,
                                  const char* axis_name, ConvAxis* axis) {
  std::string error = check_kernel_size(a, axis_name);
  if (!error.empty()) return error;
  if (a.input < 1) {
    return std::string("x's spatial dimensions must be >= 1, got ") + axis_name + " " +
           str(a.input);
  }
  int64_t k_eff;
  if (!dilated_kernel(a, axis_name, &k_eff, &error)) return error;
  // Keras: valid gives (in - 1) s + k_eff + output_padding, where None means
  // max(k_eff, s) - k_eff; same gives in * s for None, else (in - 1) s + k_eff % 2 + op.
  const bool none = a.output_padding < 0;
  int64_t tail = 0;
  bool overflow = false;
  if (padding == ConvPadding::kValid) {
    if (none) {
      tail = std::max(k_eff, a.stride);
    } else {
      overflow = __builtin_add_overflow(k_eff, a.output_padding, &tail);
    }
  } else {
    tail = none ? a.stride : k_eff % 2 + a.output_padding;
  }
  int64_t base, out;
  if (overflow || __builtin_mul_overflow(a.input - 1, a.stride, &base) ||
      __builtin_add_overflow(base, tail, &out)) {
    return std::string("the output ") + axis_name + " overflows int64 (input " + str(a.input) +
           ", stride " + str(a.stride) + ")";
  }
  axis->big = out;
  axis->small = a.input;
  axis->kernel = a.kernel;
  axis->stride = a.stride;
  axis->dilation = a.dilation;
  axis->pad_before = 0;
  if (padding == ConvPadding::kSame) {
    // A same convolution maps `out` back to ceil(out / s) positions, which must be
    // the input's; it is one fewer when k_eff is even and output_padding is 0, the
    // case TensorFlow's own Conv2DBackpropInput refuses as well (except for an empty
    // output, which it returns).
    const int64_t back = out / a.stride + (out % a.stride != 0);
    if (back != a.input && out != 0) {
      return std::string("output_padding ") + str(a.output_padding) +
             " with padding 'same' and an even dilated kernel " + axis_name + " (" +
             str(k_eff) + ") gives an output " + axis_name + " of " + str(out) +
             ", which is inconsistent with the input " + axis_name + " " + str(a.input) +
             " (stock Conv2DTranspose fails on it too): use output_padding >= 1 or None";
    }
    axis->pad_before = same_pad_before(out, a.input, a.stride, k_eff);
  }
  return "";
}

namespace {

std::string shape4(const int64_t s[4]) {
  return "[" + str(s[0]) + ", " + str(s[1]) + ", " + str(s[2]) + ", " + str(s[3]) + "]";
}

// The element count of `shape` must fit in int64 (the buffers are indexed by it).
std::string check_elements(const int64_t shape[4], const char* what) {
  int64_t n = 1;
  for (int i = 0; i < 4; ++i) {
    if (__builtin_mul_overflow(n, shape[i], &n)) {
      return std::string("the ") + what + " shape " + shape4(shape) + " overflows int64";
    }
  }
  return "";
}

// Shared by both ops: attributes, then each axis through `axis_fn`.
template <typename AxisFn>
std::string conv_geometry(const int64_t x_shape[4], const int64_t kernel_shape[4],
                          const ConvAttrs& attrs, AxisFn axis_fn, ConvGeometry* g) {
  std::string error = check_conv_attrs(attrs.strides, attrs.dilations,
                                       attrs.has_output_padding ? attrs.output_padding : nullptr);
  if (!error.empty()) return error;
  ConvAxisArgs h{x_shape[1], kernel_shape[0], attrs.strides[0], attrs.dilations[0],
                 attrs.has_output_padding ? attrs.output_padding[0] : -1};
  ConvAxisArgs w{x_shape[2], kernel_shape[1], attrs.strides[1], attrs.dilations[1],
                 attrs.has_output_padding ? attrs.output_padding[1] : -1};
  error = axis_fn(h, attrs.padding, "height", &g->h);
  if (error.empty()) error = axis_fn(w, attrs.padding, "width", &g->w);
  if (!error.empty()) return error;
  g->batch = x_shape[0];
  g->big_channels = kernel_shape[2];
  g->small_channels = kernel_shape[3];
  return "";
}

}  // namespace

std::string conv2d_geometry(const int64_t x_shape[4], const int64_t kernel_shape[4],
                            const ConvAttrs& attrs, ConvGeometry* g) {
  if (kernel_shape[2] != x_shape[3]) {
    return "kernel must have shape [kh, kw, in_channels, filters] with in_channels = x's "
           "channels " + str(x_shape[3]) + ", got kernel shape " + shape4(kernel_shape);
  }
  std::string error = conv_geometry(x_shape, kernel_shape, attrs, conv2d_axis, g);
  if (!error.empty()) return error;
  int64_t y_shape[4];
  conv2d_output_shape(*g, y_shape);
  return check_elements(y_shape, "output");
}

std::string conv2d_transpose_geometry(const int64_t x_shape[4], const int64_t kernel_shape[4],
                                      const ConvAttrs& attrs, ConvGeometry* g) {
  if (kernel_shape[3] != x_shape[3]) {
    return "kernel must have shape [kh, kw, filters, in_channels] with in_channels = x's "
           "channels " + str(x_shape[3]) + ", got kernel shape " + shape4(kernel_shape);
  }
  std::string error = conv_geometry(x_shape, kernel_shape, attrs, conv2d_transpose_axis, g);
  if (!error.empty()) return error;
  int64_t y_shape[4];
  conv2d_transpose_output_shape(*g, y_shape);
  return check_elements(y_shape, "output");
}

}  // namespace fusedlayers
