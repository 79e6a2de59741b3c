// numpy entry points into the conv2d / conv2d_transpose kernels (NHWC, Keras kernel
// layouts), so the kernels are tested against numpy without TensorFlow.
#include <pybind11/stl.h>

#include "csrc/kernels/conv.h"
#include "csrc/python/bindings.h"

namespace fusedlayers {
namespace {

using Pair = std::vector<int64_t>;

// Reads the attributes and builds the geometry, raising ValueError with the
// kernels' own message.
template <typename T>
ConvGeometry geometry_of(const Array<T>& x, const Array<T>& kernel, const Pair& strides,
                         const std::string& padding, const Pair& dilations,
                         const py::object& output_padding, bool transpose) {
  require(x.ndim() == 4, "x must have rank 4 [batch, height, width, channels]");
  require(kernel.ndim() == 4, "kernel must have rank 4 [kh, kw, ., .]");
  require(strides.size() == 2 && dilations.size() == 2, "strides and dilations take 2 values");
  ConvAttrs attrs;
  require(conv_padding_from_name(padding, &attrs.padding),
          "padding must be 'valid' or 'same', got '" + padding + "'");
  for (int i = 0; i < 2; ++i) {
    attrs.strides[i] = strides[i];
    attrs.dilations[i] = dilations[i];
  }
  if (!output_padding.is_none()) {
    const Pair op = output_padding.cast<Pair>();
    require(op.size() == 2, "output_padding takes 2 values");
    attrs.has_output_padding = true;
    attrs.output_padding[0] = op[0];
    attrs.output_padding[1] = op[1];
  }
  int64_t xs[4], ks[4];
  for (int i = 0; i < 4; ++i) xs[i] = x.shape(i), ks[i] = kernel.shape(i);
  ConvGeometry g;
  const std::string error = transpose ? conv2d_transpose_geometry(xs, ks, attrs, &g)
                                      : conv2d_geometry(xs, ks, attrs, &g);
  require(error.empty(), error);
  return g;
}

std::vector<py::ssize_t> y_shape_of(const ConvGeometry& g, bool transpose) {
  int64_t s[4];
  if (transpose) {
    conv2d_transpose_output_shape(g, s);
  } else {
    conv2d_output_shape(g, s);
  }
  return {s[0], s[1], s[2], s[3]};
}

// Returns (y, z): z is the pre-activation when the backward needs it, else empty.
template <typename T>
py::tuple conv_forward_np(const Array<T>& x, const Array<T>& kernel, const py::object& bias,
                          const Pair& strides, const std::string& padding, const Pair& dilations,
                          const py::object& output_padding, const std::string& activation,
                          float slope, int threads, bool transpose) {
  ConvForwardArgs<T> a;
  a.geometry = geometry_of(x, kernel, strides, padding, dilations, output_padding, transpose);
  a.act = parse_activation(activation, slope);
  const auto y_shape = y_shape_of(a.geometry, transpose);
  Array<T> b_arr;
  if (!bias.is_none()) {
    b_arr = bias.cast<Array<T>>();
    require(b_arr.ndim() == 1 && b_arr.shape(0) == y_shape[3], "bias must have shape [filters]");
  }
  const bool save_z = grad_needs_preactivation(a.act);
  Array<T> y(y_shape);
  Array<T> z(save_z ? y_shape : std::vector<py::ssize_t>{0});
  a.x = x.data();
  a.kernel = kernel.data();
  a.bias = bias.is_none() ? nullptr : b_arr.data();
  a.y = y.mutable_data();
  a.z = save_z ? z.mutable_data() : nullptr;
  {
    py::gil_scoped_release release;
    ThreadRunner runner(threads);
    if (transpose) {
      conv2d_transpose_forward(a, runner);
    } else {
      conv2d_forward(a, runner);
    }
  }
  return py::make_tuple(y, z);
}

// Returns (dx, dkernel, dbias or None).
template <typename T>
py::tuple conv_backward_np(const Array<T>& dy, const Array<T>& x, const Array<T>& kernel,
                           const Array<T>& y, const py::object& z, bool with_bias,
                           const Pair& strides, const std::string& padding,
                           const Pair& dilations, const py::object& output_padding,
                           const std::string& activation, float slope, int threads,
                           bool transpose) {
  ConvBackwardArgs<T> a;
  a.geometry = geometry_of(x, kernel, strides, padding, dilations, output_padding, transpose);
  a.act = parse_activation(activation, slope);
  const auto y_shape = y_shape_of(a.geometry, transpose);
  auto same_as_y = [&](const Array<T>& t) {
    return t.ndim() == 4 && std::equal(y_shape.begin(), y_shape.end(), t.shape());
  };
  require(same_as_y(dy), "dy must have the forward output's shape");
  require(same_as_y(y), "y must have the forward output's shape");
  Array<T> z_arr;
  if (grad_needs_preactivation(a.act)) {
    require(!z.is_none(), "this activation's gradient needs the pre-activation z");
    z_arr = z.cast<Array<T>>();
    require(same_as_y(z_arr), "z must have the forward output's shape");
    a.z = z_arr.data();
  }
  std::vector<py::ssize_t> x_shape(x.shape(), x.shape() + 4), k_shape(kernel.shape(), kernel.shape() + 4);
  Array<T> dx(x_shape), dk(k_shape);
  Array<T> db(std::vector<py::ssize_t>{with_bias ? y_shape[3] : 0});
  a.dy = dy.data();
  a.x = x.data();
  a.kernel = kernel.data();
  a.y = y.data();
  a.dx = dx.mutable_data();
  a.dkernel = dk.mutable_data();
  a.dbias = with_bias ? db.mutable_data() : nullptr;
  {
    py::gil_scoped_release release;
    ThreadRunner runner(threads);
    if (transpose) {
      conv2d_transpose_backward(a, runner);
    } else {
      conv2d_backward(a, runner);
    }
  }
  return py::make_tuple(dx, dk, with_bias ? py::object(db) : py::object(py::none()));
}

template <typename T>
void define_for(py::module_& m) {
  const Pair one{1, 1};
  m.def(
      "conv2d_forward",
      [](const Array<T>& x, const Array<T>& k, const py::object& b, const Pair& s,
         const std::string& p, const Pair& d, const std::string& act, float slope, int threads) {
        return conv_forward_np<T>(x, k, b, s, p, d, py::none(), act, slope, threads, false);
      },
      py::arg("x"), py::arg("kernel"), py::arg("bias"), py::arg("strides") = one,
      py::arg("padding") = "valid", py::arg("dilations") = one, py::arg("activation") = "linear",
      py::arg("leaky_slope") = kDefaultLeakySlope, py::arg("threads") = 1);
  m.def(
      "conv2d_transpose_forward",
      [](const Array<T>& x, const Array<T>& k, const py::object& b, const Pair& s,
         const std::string& p, const py::object& op, const Pair& d, const std::string& act,
         float slope, int threads) {
        return conv_forward_np<T>(x, k, b, s, p, d, op, act, slope, threads, true);
      },
      py::arg("x"), py::arg("kernel"), py::arg("bias"), py::arg("strides") = one,
      py::arg("padding") = "valid", py::arg("output_padding") = py::none(),
      py::arg("dilations") = one, py::arg("activation") = "linear",
      py::arg("leaky_slope") = kDefaultLeakySlope, py::arg("threads") = 1);
  m.def(
      "conv2d_backward",
      [](const Array<T>& dy, const Array<T>& x, const Array<T>& k, const Array<T>& y,
         const py::object& z, bool with_bias, const Pair& s, const std::string& p, const Pair& d,
         const std::string& act, float slope, int threads) {
        return conv_backward_np<T>(dy, x, k, y, z, with_bias, s, p, d, py::none(), act, slope,
                                   threads, false);
      },
      py::arg("dy"), py::arg("x"), py::arg("kernel"), py::arg("y"), py::arg("z"),
      py::arg("with_bias") = true, py::arg("strides") = one, py::arg("padding") = "valid",
      py::arg("dilations") = one, py::arg("activation") = "linear",
      py::arg("leaky_slope") = kDefaultLeakySlope, py::arg("threads") = 1);
  m.def(
      "conv2d_transpose_backward",
      [](const Array<T>& dy, const Array<T>& x, const Array<T>& k, const Array<T>& y,
         const py::object& z, bool with_bias, const Pair& s, const std::string& p,
         const py::object& op, const Pair& d, const std::string& act, float slope,
         int threads) {
        return conv_backward_np<T>(dy, x, k, y, z, with_bias, s, p, d, op, act, slope, threads,
                                   true);
      },
      py::arg("dy"), py::arg("x"), py::arg("kernel"), py::arg("y"), py::arg("z"),
      py::arg("with_bias") = true, py::arg("strides") = one, py::arg("padding") = "valid",
      py::arg("output_padding") = py::none(), py::arg("dilations") = one,
      py::arg("activation") = "linear", py::arg("leaky_slope") = kDefaultLeakySlope,
      py::arg("threads") = 1);
}

}  // namespace

void register_conv_bindings(py::module_& m) {
  define_for<float>(m);
  define_for<double>(m);
}

}  // namespace fusedlayers
