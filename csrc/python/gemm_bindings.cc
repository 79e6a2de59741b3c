// numpy entry points into the GEMM engine, for engine tests at every block edge, and
// the FMA peak probe the benchmarks divide by.
#include <chrono>

#include "csrc/kernels/gemm.h"
#include "csrc/kernels/gemm_operands.h"
#include "csrc/python/bindings.h"

namespace fusedlayers {
namespace {

// Any 2-D array, strides kept (the engine reads arbitrary element strides).
template <typename T>
using StridedArray = py::array_t<T, py::array::forcecast>;

int64_t element_stride(const py::array& x, int dim) {
  require(x.strides(dim) % static_cast<py::ssize_t>(x.itemsize()) == 0,
          "array strides must be whole elements");
  return x.strides(dim) / static_cast<py::ssize_t>(x.itemsize());
}

// A source packed through the PackSource::pack callback instead of the engine's own
// loops: the path every prologue and non-float type takes.
template <typename T>
PackSource<T> through_callback(const PackSource<T>& plain) {
  PackSource<T> src;
  src.rows = plain.rows;
  src.depth = plain.depth;
  src.pack = [plain](int64_t r0, int64_t nr, int64_t d0, int64_t nd, int panel, T* dst) {
    for (int64_t pr = 0; pr < nr; pr += panel)
      for (int rr = 0; rr < panel; ++rr)
        for (int64_t d = 0; d < nd; ++d) {
          const int64_t r = r0 + pr + rr;
          dst[pr * nd + d * panel + rr] =
              pr + rr < nr ? plain.data[r * plain.row_stride + (d0 + d) * plain.depth_stride] : T(0);
        }
  };
  return src;
}

// C = A·B. `accumulate_in_output`: the engine sums in C itself (the float ops' path);
// otherwise in its scratch, with an epilogue copying tiles out. `callback_packing`:
// both operands packed through PackSource::pack.
template <typename T>
Array<T> gemm_np(const StridedArray<T>& a, const StridedArray<T>& b, int threads,
                 bool accumulate_in_output, bool callback_packing) {
  require(a.ndim() == 2 && b.ndim() == 2 && a.shape(1) == b.shape(0),
          "gemm needs a [M, K] and b [K, N]");
  const int64_t m = a.shape(0), k = a.shape(1), n = b.shape(1);
  PackSource<T> a_src, b_src;
  a_src.rows = m;
  a_src.depth = k;
  a_src.data = a.data();
  a_src.row_stride = element_stride(a, 0);
  a_src.depth_stride = element_stride(a, 1);
  b_src.rows = n;  // B seen transposed: n rows of depth k
  b_src.depth = k;
  b_src.data = b.data();
  b_src.row_stride = element_stride(b, 1);
  b_src.depth_stride = element_stride(b, 0);
  if (callback_packing) {
    a_src = through_callback(a_src);
    b_src = through_callback(b_src);
  }
  Array<T> c({m, n});
  T* out = c.mutable_data();
  {
    py::gil_scoped_release release;
    ThreadRunner runner(threads);
    if (accumulate_in_output) {
      gemm<T>(a_src, b_src, TileEpilogue<T>(), runner, GemmAccumulator<T>{out, n});
    } else {
      gemm<T>(a_src, b_src,
              [&](int64_t i0, int64_t mi, int64_t j0, int64_t nj, const T* tile, int64_t ld) {
                for (int64_t i = 0; i < mi; ++i)
                  for (int64_t j = 0; j < nj; ++j) out[(i0 + i) * n + j0 + j] = tile[i * ld + j];
              },
              runner);
    }
  }
  return c;
}

// Runs the FMA peak loop on `threads` threads at once; returns GFLOP/s in total.
double measure_peak_gflops(int threads, double seconds) {
  require(threads >= 1, "threads must be >= 1, got " + std::to_string(threads));
  require(seconds > 0 && seconds <= 60, "seconds must be in (0, 60], got " + std::to_string(seconds));
  std::vector<int64_t> flops(threads, 0);
  py::gil_scoped_release release;
  ThreadRunner runner(threads);
  const auto start = std::chrono::steady_clock::now();
  runner.run(threads, [&](int64_t t) { flops[t] = fma_peak_flops(seconds); });
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  int64_t total = 0;
  for (int64_t f : flops) total += f;
  return total / elapsed * 1e-9;
}

}  // namespace

void register_gemm_bindings(py::module_& m) {
  m.def("gemm", &gemm_np<float>, py::arg("a"), py::arg("b"), py::arg("threads") = 1,
        py::arg("accumulate_in_output") = true, py::arg("callback_packing") = false);
  m.def("gemm", &gemm_np<double>, py::arg("a"), py::arg("b"), py::arg("threads") = 1,
        py::arg("accumulate_in_output") = true, py::arg("callback_packing") = false);
  m.def(
      "gemm_blocking",
      [](const std::string& dtype) {
        require(dtype == "float32" || dtype == "float64",
                "dtype must be 'float32' or 'float64', got '" + dtype + "'");
        const GemmBlocking b = dtype == "float32" ? gemm_blocking<float>() : gemm_blocking<double>();
        py::dict d;
        d["mr"] = b.mr;
        d["nr"] = b.nr;
        d["mc"] = b.mc;
        d["nc"] = b.nc;
        d["kc"] = b.kc;
        return d;
      },
      py::arg("dtype") = "float32", "The GEMM engine's block sizes on this CPU and ISA.");
  m.def("kernel_isa", [] { return std::string(gemm_kernel_isa()); },
        "The micro-kernel instruction set the GEMM engine dispatched to.");
  m.def("measure_peak_gflops", &measure_peak_gflops, py::arg("threads") = 1,
        py::arg("seconds") = 0.2,
        "fp32 FMA peak in GFLOP/s: a register-resident FMA loop in the dispatched ISA, run on "
        "`threads` threads at once for about `seconds`.");
}

}  // namespace fusedlayers
