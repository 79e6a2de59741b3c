// Device-pointer entry points into the CUDA conv2d / conv2d_transpose kernels (NHWC,
// Keras kernel layouts); shapes come as tuples since the pointers carry none.
#include <pybind11/stl.h>

#include <vector>

#include "csrc/kernels/cuda/conv.h"
#include "csrc/python/cuda_bindings.h"

namespace fusedlayers {
namespace {

using Shape = std::vector<int64_t>;

// The attributes of a call, as the CPU bindings and the TF ops take them.
struct ConvCall {
  Shape x_shape, kernel_shape, strides, dilations;
  std::string padding;
  py::object output_padding;
};

ConvGeometry geometry_of(const ConvCall& c, gpu::ConvKind kind) {
  require(c.x_shape.size() == 4, "x_shape must be [batch, height, width, channels]");
  require(c.kernel_shape.size() == 4, "kernel_shape must be [kh, kw, ., .]");
  require(c.strides.size() == 2 && c.dilations.size() == 2, "strides and dilations take 2 values");
  ConvAttrs attrs;
  require(conv_padding_from_name(c.padding, &attrs.padding),
          "padding must be 'valid' or 'same', got '" + c.padding + "'");
  for (int i = 0; i < 2; ++i) attrs.strides[i] = c.strides[i], attrs.dilations[i] = c.dilations[i];
  if (!c.output_padding.is_none()) {
    require(kind == gpu::ConvKind::kConv2dTranspose, "output_padding is for conv2d_transpose");
    const Shape op = c.output_padding.cast<Shape>();
    require(op.size() == 2, "output_padding takes 2 values");
    attrs.has_output_padding = true;
    attrs.output_padding[0] = op[0], attrs.output_padding[1] = op[1];
  }
  ConvGeometry g;
  const std::string error =
      kind == gpu::ConvKind::kConv2d
          ? conv2d_geometry(c.x_shape.data(), c.kernel_shape.data(), attrs, &g)
          : conv2d_transpose_geometry(c.x_shape.data(), c.kernel_shape.data(), attrs, &g);
  require(error.empty(), error);
  return g;
}

py::tuple output_shape(const ConvCall& c, gpu::ConvKind kind) {
  const ConvGeometry g = geometry_of(c, kind);
  int64_t s[4];
  if (kind == gpu::ConvKind::kConv2d) {
    conv2d_output_shape(g, s);
  } else {
    conv2d_transpose_output_shape(g, s);
  }
  return py::make_tuple(s[0], s[1], s[2], s[3]);
}

void conv_forward(gpu::ConvKind kind, const ConvCall& c, const py::object& x,
                  const py::object& kernel, const py::object& bias, const py::object& y,
                  const py::object& z, const std::string& dtype, const std::string& activation,
                  float slope, bool allow_tf32, const py::object& stream) {
  gpu::ConvForwardArgs a;
  a.kind = kind;
  a.geometry = geometry_of(c, kind);
  a.dtype = parse_dtype(dtype);
  a.act = parse_activation(activation, slope);
  a.allow_tf32 = allow_tf32;
  a.x = device_pointer(x, "x");
  a.kernel = device_pointer(kernel, "kernel");
  a.bias = device_pointer(bias, "bias");
  a.y = device_pointer(y, "y");
  a.z = device_pointer(z, "z");
  const cudaStream_t s = stream_from_int(stream);
  raise_if_error(gpu::check_conv_forward_args(a));
  require_device_memory(
      {{a.x, "x"}, {a.kernel, "kernel"}, {a.bias, "bias"}, {a.y, "y"}, {a.z, "z"}});
  gpu::Status status;
  {
    py::gil_scoped_release release;
    status = gpu::conv_forward(a, s);
  }
  raise_if_error(status);
}

void conv_backward(gpu::ConvKind kind, const ConvCall& c, const py::object& dy,
                   const py::object& x, const py::object& kernel, const py::object& y,
                   const py::object& z, const py::object& dx, const py::object& dkernel,
                   const py::object& dbias, const std::string& dtype,
                   const std::string& activation, float slope, bool allow_tf32,
                   const py::object& workspace, std::size_t workspace_bytes,
                   const py::object& stream) {
  gpu::ConvBackwardArgs a;
  a.kind = kind;
  a.geometry = geometry_of(c, kind);
  a.dtype = parse_dtype(dtype);
  a.act = parse_activation(activation, slope);
  a.allow_tf32 = allow_tf32;
  a.dy = device_pointer(dy, "dy");
  a.x = device_pointer(x, "x");
  a.kernel = device_pointer(kernel, "kernel");
  a.y = device_pointer(y, "y");
  a.z = device_pointer(z, "z");
  a.dx = device_pointer(dx, "dx");
  a.dkernel = device_pointer(dkernel, "dkernel");
  a.dbias = device_pointer(dbias, "dbias");
  a.workspace = device_pointer(workspace, "workspace");
  a.workspace_bytes = workspace_bytes;
  const cudaStream_t s = stream_from_int(stream);
  raise_if_error(gpu::check_conv_backward_args(a));
  require_device_memory({{a.dy, "dy"}, {a.x, "x"}, {a.kernel, "kernel"}, {a.y, "y"}, {a.z, "z"},
                         {a.dx, "dx"}, {a.dkernel, "dkernel"}, {a.dbias, "dbias"},
                         {a.workspace, "workspace"}});
  gpu::Status status;
  {
    py::gil_scoped_release release;
    status = gpu::conv_backward(a, s);
  }
  raise_if_error(status);
}

// Registers name_output_shape, name_forward and name_backward for one kind.
void define_kind(py::module_& m, const std::string& name, gpu::ConvKind kind) {
  const py::none none;
  const Shape one{1, 1};
  const bool transpose = kind == gpu::ConvKind::kConv2dTranspose;
  const std::string role = transpose ? "conv2d_transpose" : "conv2d";
  m.def(
      (name + "_output_shape").c_str(),
      [kind](const Shape& x_shape, const Shape& kernel_shape, const Shape& strides,
             const std::string& padding, const Shape& dilations, const py::object& op) {
        return output_shape({x_shape, kernel_shape, strides, dilations, padding, op}, kind);
      },
      py::kw_only(), py::arg("x_shape"), py::arg("kernel_shape"), py::arg("strides") = one,
      py::arg("padding") = "valid", py::arg("dilations") = one,
      py::arg("output_padding") = none, ("The shape of " + role + "'s output y.").c_str());
  m.def(
      (name + "_forward").c_str(),
      [kind](const py::object& x, const Shape& x_shape, const py::object& kernel,
             const Shape& kernel_shape, const py::object& bias, const py::object& y,
             const py::object& z, const Shape& strides, const std::string& padding,
             const Shape& dilations, const py::object& op, const std::string& dtype,
             const std::string& activation, float slope, bool allow_tf32,
             const py::object& stream) {
        conv_forward(kind, {x_shape, kernel_shape, strides, dilations, padding, op}, x, kernel,
                     bias, y, z, dtype, activation, slope, allow_tf32, stream);
      },
      py::kw_only(), py::arg("x"), py::arg("x_shape"), py::arg("kernel"), py::arg("kernel_shape"),
      py::arg("bias"), py::arg("y"), py::arg("z") = none, py::arg("strides") = one,
      py::arg("padding") = "valid", py::arg("dilations") = one, py::arg("output_padding") = none,
      py::arg("dtype"), py::arg("activation") = "linear",
      py::arg("leaky_slope") = kDefaultLeakySlope, py::arg("allow_tf32") = false,
      py::arg("stream") = 0,
      ("y = act(" + role + "(x, kernel) + bias), z = the pre-activation when given.").c_str());
  m.def(
      (name + "_backward").c_str(),
      [kind](const py::object& dy, const py::object& x, const Shape& x_shape,
             const py::object& kernel, const Shape& kernel_shape, const py::object& y,
             const py::object& z, const py::object& dx, const py::object& dkernel,
             const py::object& dbias, const Shape& strides, const std::string& padding,
             const Shape& dilations, const py::object& op, const std::string& dtype,
             const std::string& activation, float slope, bool allow_tf32,
             const py::object& workspace, std::size_t workspace_bytes,
             const py::object& stream) {
        conv_backward(kind, {x_shape, kernel_shape, strides, dilations, padding, op}, dy, x,
                      kernel, y, z, dx, dkernel, dbias, dtype, activation, slope, allow_tf32,
                      workspace, workspace_bytes, stream);
      },
      py::kw_only(), py::arg("dy"), py::arg("x"), py::arg("x_shape"), py::arg("kernel"),
      py::arg("kernel_shape"), py::arg("y"), py::arg("z") = none, py::arg("dx"),
      py::arg("dkernel"), py::arg("dbias"), py::arg("strides") = one,
      py::arg("padding") = "valid", py::arg("dilations") = one, py::arg("output_padding") = none,
      py::arg("dtype"), py::arg("activation") = "linear",
      py::arg("leaky_slope") = kDefaultLeakySlope, py::arg("allow_tf32") = false,
      py::arg("workspace"), py::arg("workspace_bytes"), py::arg("stream") = 0,
      ("dx, dkernel, dbias (each skipped when None) of " + role + "_forward.").c_str());
}

}  // namespace

void register_cuda_conv_bindings(py::module_& m) {
  define_kind(m, "conv2d", gpu::ConvKind::kConv2d);
  define_kind(m, "conv2d_transpose", gpu::ConvKind::kConv2dTranspose);
}

}  // namespace fusedlayers
