// numpy entry points into the GEMM engine, for engine tests at every block edge.
#include "csrc/kernels/gemm.h"
#include "csrc/kernels/gemm_operands.h"
#include "csrc/python/bindings.h"

namespace fusedlayers {
namespace {

// Plain C = A·B.
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

}  // namespace

void register_gemm_bindings(py::module_& m) {
  m.def("gemm", &gemm_np<float>, py::arg("a"), py::arg("b"), py::arg("threads") = 1);
  m.def("gemm", &gemm_np<double>, py::arg("a"), py::arg("b"), py::arg("threads") = 1);
  m.def("kernel_isa", [] { return std::string(gemm_kernel_isa()); },
        "The micro-kernel instruction set the GEMM engine dispatched to.");
}

}  // namespace fusedlayers
