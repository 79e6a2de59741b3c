// Device-pointer entry points into the CUDA dense kernels.
#include "csrc/kernels/cuda/dense.h"
#include "csrc/python/cuda_bindings.h"

namespace fusedlayers {
namespace {

void dense_forward(const py::object& x, const py::object& kernel, const py::object& bias,
                   const py::object& y, const py::object& z, int64_t m, int64_t k, int64_t n,
                   const std::string& dtype, const std::string& activation, float slope,
                   bool allow_tf32, const py::object& workspace, std::size_t workspace_bytes,
                   const py::object& stream) {
  gpu::DenseForwardArgs a;
  a.dtype = parse_dtype(dtype);
  a.m = m, a.k = k, a.n = n;
  a.act = parse_activation(activation, slope);
  a.allow_tf32 = allow_tf32;
  a.x = device_pointer(x, "x");
  a.kernel = device_pointer(kernel, "kernel");
  a.bias = device_pointer(bias, "bias");
  a.y = device_pointer(y, "y");
  a.z = device_pointer(z, "z");
  a.workspace = device_pointer(workspace, "workspace");
  a.workspace_bytes = workspace_bytes;
  const cudaStream_t s = stream_from_int(stream);
  raise_if_error(gpu::check_dense_forward_args(a));
  require_device_memory({{a.x, "x"}, {a.kernel, "kernel"}, {a.bias, "bias"}, {a.y, "y"},
                         {a.z, "z"}, {a.workspace, "workspace"}});
  gpu::Status status;
  {
    py::gil_scoped_release release;
    status = gpu::dense_forward(a, s);
  }
  raise_if_error(status);
}

void dense_backward(const py::object& dy, const py::object& x, const py::object& kernel,
                    const py::object& y, const py::object& z, const py::object& dx,
                    const py::object& dkernel, const py::object& dbias, int64_t m, int64_t k,
                    int64_t n, const std::string& dtype, const std::string& activation,
                    float slope, bool allow_tf32, const py::object& workspace,
                    std::size_t workspace_bytes, const py::object& stream) {
  gpu::DenseBackwardArgs a;
  a.dtype = parse_dtype(dtype);
  a.m = m, a.k = k, a.n = n;
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
  raise_if_error(gpu::check_dense_backward_args(a));
  require_device_memory({{a.dy, "dy"}, {a.x, "x"}, {a.kernel, "kernel"}, {a.y, "y"}, {a.z, "z"},
                         {a.dx, "dx"}, {a.dkernel, "dkernel"}, {a.dbias, "dbias"},
                         {a.workspace, "workspace"}});
  gpu::Status status;
  {
    py::gil_scoped_release release;
    status = gpu::dense_backward(a, s);
  }
  raise_if_error(status);
}

}  // namespace

void register_cuda_dense_bindings(py::module_& m) {
  const py::none none;
  m.def("dense_forward", &dense_forward, py::kw_only(), py::arg("x"), py::arg("kernel"),
        py::arg("bias"), py::arg("y"), py::arg("z") = none, py::arg("m"), py::arg("k"),
        py::arg("n"), py::arg("dtype"), py::arg("activation") = "linear",
        py::arg("leaky_slope") = kDefaultLeakySlope, py::arg("allow_tf32") = false,
        py::arg("workspace") = none, py::arg("workspace_bytes") = 0, py::arg("stream") = 0,
        "y[m, n] = act(x[m, k] @ kernel[k, n] + bias[n]), z = the pre-activation when given; "
        "all tensors device addresses, row-major.");
  m.def("dense_backward", &dense_backward, py::kw_only(), py::arg("dy"), py::arg("x"),
        py::arg("kernel"), py::arg("y"), py::arg("z") = none, py::arg("dx"), py::arg("dkernel"),
        py::arg("dbias"), py::arg("m"), py::arg("k"), py::arg("n"), py::arg("dtype"),
        py::arg("activation") = "linear", py::arg("leaky_slope") = kDefaultLeakySlope,
        py::arg("allow_tf32") = false, py::arg("workspace"), py::arg("workspace_bytes"),
        py::arg("stream") = 0,
        "dx, dkernel, dbias (each skipped when None) of dense_forward, given dy, y and z.");
}

}  // namespace fusedlayers
