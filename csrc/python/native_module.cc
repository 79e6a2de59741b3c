// fusedlayers._native: build information, the CPU features found at run time, and
// numpy entry points into csrc/kernels, so the kernels are tested without TensorFlow.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <atomic>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "csrc/kernels/activation.h"
#include "csrc/kernels/cpu_features.h"
#include "csrc/kernels/dense.h"
#include "csrc/kernels/gemm.h"
#include "csrc/kernels/gemm_operands.h"

namespace py = pybind11;

namespace fusedlayers {
namespace {

// Runs tasks on `threads` std::threads pulling from a shared counter.
class ThreadRunner final : public TaskRunner {
 public:
  explicit ThreadRunner(int threads) : threads_(threads < 1 ? 1 : threads) {}
  int num_threads() const override { return threads_; }
  void run(int64_t num_tasks, const std::function<void(int64_t)>& task) override {
    std::atomic<int64_t> next{0};
    auto worker = [&] {
      for (int64_t i = next++; i < num_tasks; i = next++) task(i);
    };
    std::vector<std::thread> pool;
    for (int t = 1; t < threads_ && t < num_tasks; ++t) pool.emplace_back(worker);
    worker();
    for (auto& t : pool) t.join();
  }

 private:
  int threads_;
};

template <typename T>
using Array = py::array_t<T, py::array::c_style | py::array::forcecast>;

ActivationSpec parse_activation(const std::string& name, float slope) {
  ActivationSpec spec;
  spec.slope = slope;
  if (!activation_from_name(name, &spec.kind)) {
    throw py::value_error("activation must be one of {" + activation_name_list() + "}, got '" +
                          name + "'");
  }
  return spec;
}

void require(bool ok, const std::string& message) {
  if (!ok) throw py::value_error(message);
}

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

// Plain C = A·B through the engine, for engine tests at every block edge.
template <typename T>
Array<T> gemm_np(const Array<T>& a, const Array<T>& b, int threads) {
  require(a.ndim() == 2 && b.ndim() == 2 && a.shape(1) == b.shape(0),
          "gemm needs a [M, K] and b [K, N]");
  const int64_t m = a.shape(0), k = a.shape(1), n = b.shape(1);
  Array<T> c({m, n});
  T* out = c.mutable_data();
  {
    py::gil_scoped_release release;
    ThreadRunner runner(threads);
    gemm<T>(strided_source<T, T>(a.data(), m, k, k, 1), strided_source<T, T>(b.data(), n, k, 1, n),
            [&](int64_t i0, int64_t mi, int64_t j0, int64_t nj, const T* tile, int64_t ld) {
              for (int64_t i = 0; i < mi; ++i)
                for (int64_t j = 0; j < nj; ++j) out[(i0 + i) * n + j0 + j] = tile[i * ld + j];
            },
            runner);
  }
  return c;
}

py::dict cpu_features_dict() {
  const CpuFeatures& f = cpu_features();
  py::dict d;
  d["vendor"] = f.vendor;
  d["brand"] = f.brand;
  d["sse4_2"] = f.sse42;
  d["avx"] = f.avx;
  d["avx2"] = f.avx2;
  d["fma"] = f.fma;
  d["f16c"] = f.f16c;
  d["avx512f"] = f.avx512f;
  d["avx512bw"] = f.avx512bw;
  d["avx512vl"] = f.avx512vl;
  d["avx512dq"] = f.avx512dq;
  d["avx512_bf16"] = f.avx512_bf16;
  d["avx512_fp16"] = f.avx512_fp16;
  d["amx_bf16"] = f.amx_bf16;
  return d;
}

}  // namespace
}  // namespace fusedlayers

PYBIND11_MODULE(_native, m) {
  using namespace fusedlayers;
  m.doc() = "fusedlayers native kernels (no TensorFlow): build info, CPU features, test entry points";
  m.def("cpu_features", &cpu_features_dict, "CPU features detected at run time.");
  m.def("activation_names", [] {
    std::vector<std::string> names(std::begin(kActivationNames), std::end(kActivationNames));
    return names;
  });
  m.def("kernel_isa", [] { return std::string(gemm_kernel_isa()); },
        "The micro-kernel instruction set the GEMM engine dispatched to.");
  m.def("compiler", [] { return std::string(__VERSION__); });
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
  m.def("gemm", &gemm_np<float>, py::arg("a"), py::arg("b"), py::arg("threads") = 1);
  m.def("gemm", &gemm_np<double>, py::arg("a"), py::arg("b"), py::arg("threads") = 1);
}
