// numpy entry points into the dense kernels.
#include "csrc/kernels/dense.h"
#include "csrc/python/bindings.h"

namespace fusedlayers {
namespace {

template <typename T>
void check_dense_shapes(const Array<T>& x, const Array<T>& w, const py::object& bias) {
  require(x.ndim() == 2, "x must have shape [M, K]");
  require(w.ndim() == 2 && w.shape(0) == x.shape(1), "kernel must have shape [K, N] with K = x.shape[1]");
  if (!bias.is_none()) {
    const Array<T> b = bias.cast<Array<T>>();
    require(b.ndim() == 1 && b.shape(0) == w.shape(1), "bias must have shape [N]");
  }
}

// Returns (y, z): z is the pre-activation when the backward needs it, else empty.
template <typename T>
py::tuple dense_forward_np(const Array<T>& x, const Array<T>& w, const py::object& bias,
                           const std::string& activation, float slope, int threads) {
  check_dense_shapes(x, w, bias);
  DenseForwardArgs<T> a;
  a.m = x.shape(0);
  a.k = x.shape(1);
  a.n = w.shape(1);
  a.act = parse_activation(activation, slope);
  Array<T> b_arr = bias.is_none() ? Array<T>() : bias.cast<Array<T>>();
  const bool save_z = grad_needs_preactivation(a.act);
  Array<T> y({a.m, a.n});
  Array<T> z(std::vector<py::ssize_t>{save_z ? a.m : 0, save_z ? a.n : 0});
  a.x = x.data();
  a.w = w.data();
  a.bias = bias.is_none() ? nullptr : b_arr.data();
  a.y = y.mutable_data();
  a.z = save_z ? z.mutable_data() : nullptr;
  {
    py::gil_scoped_release release;
    ThreadRunner runner(threads);
    dense_forward(a, runner);
  }
  return py::make_tuple(y, z);
}

// Returns (dx, dw, db or None).
template <typename T>
py::tuple dense_backward_np(const Array<T>& dy, const Array<T>& x, const Array<T>& w,
                            const Array<T>& y, const py::object& z, bool with_bias,
                            const std::string& activation, float slope, int threads) {
  check_dense_shapes(x, w, py::none());
  DenseBackwardArgs<T> a;
  a.m = x.shape(0);
  a.k = x.shape(1);
  a.n = w.shape(1);
  a.act = parse_activation(activation, slope);
  require(dy.ndim() == 2 && dy.shape(0) == a.m && dy.shape(1) == a.n, "dy must have shape [M, N]");
  require(y.ndim() == 2 && y.shape(0) == a.m && y.shape(1) == a.n, "y must have shape [M, N]");
  Array<T> z_arr;
  if (grad_needs_preactivation(a.act)) {
    require(!z.is_none(), "this activation's gradient needs the pre-activation z");
    z_arr = z.cast<Array<T>>();
    require(z_arr.ndim() == 2 && z_arr.shape(0) == a.m && z_arr.shape(1) == a.n,
            "z must have shape [M, N]");
    a.z = z_arr.data();
  }
  Array<T> dx({a.m, a.k}), dw({a.k, a.n});
  Array<T> db(std::vector<py::ssize_t>{with_bias ? a.n : 0});
  a.dy = dy.data();
  a.x = x.data();
  a.w = w.data();
  a.y = y.data();
  a.dx = dx.mutable_data();
  a.dw = dw.mutable_data();
  a.db = with_bias ? db.mutable_data() : nullptr;
  {
    py::gil_scoped_release release;
    ThreadRunner runner(threads);
    dense_backward(a, runner);
  }
  return py::make_tuple(dx, dw, with_bias ? py::object(db) : py::object(py::none()));
}

}  // namespace

void register_dense_bindings(py::module_& m) {
  m.def("dense_forward", &dense_forward_np<float>, py::arg("x"), py::arg("kernel"), py::arg("bias"),
        py::arg("activation") = "linear", py::arg("leaky_slope") = kDefaultLeakySlope,
        py::arg("threads") = 1);
  m.def("dense_forward", &dense_forward_np<double>, py::arg("x"), py::arg("kernel"), py::arg("bias"),
        py::arg("activation") = "linear", py::arg("leaky_slope") = kDefaultLeakySlope,
        py::arg("threads") = 1);
  m.def("dense_backward", &dense_backward_np<float>, py::arg("dy"), py::arg("x"), py::arg("kernel"),
        py::arg("y"), py::arg("z"), py::arg("with_bias") = true, py::arg("activation") = "linear",
        py::arg("leaky_slope") = kDefaultLeakySlope, py::arg("threads") = 1);
  m.def("dense_backward", &dense_backward_np<double>, py::arg("dy"), py::arg("x"), py::arg("kernel"),
        py::arg("y"), py::arg("z"), py::arg("with_bias") = true, py::arg("activation") = "linear",
        py::arg("leaky_slope") = kDefaultLeakySlope, py::arg("threads") = 1);
}

}  // namespace fusedlayers
