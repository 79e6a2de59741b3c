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
// loops: the path every prologue and non-float type takes. Written from the layout
// in gemm.h, element by element, so it also checks the engine's packing loops.
template <typename T>
PackSource<T> through_callback(const PackSource<T>& plain) {
  PackSource<T> src;
  src.rows = plain.rows;
  src.depth = plain.depth;
  src.pack = [plain](int64_t r0, int64_t nr, int64_t d0, int64_t nd, int panel, T* dst) {
    constexpr int G = kDepthGroup<T>;
    const int64_t ndp = (nd + G - 1) / G * G;
    for (int64_t pr = 0; pr < nr; pr += panel)
      for (int rr = 0; rr < panel; ++rr)
        for (int64_t d = 0; d < ndp; ++d) {
          const int64_t r = r0 + pr + rr;
          dst[pr * ndp + (d / G) * panel * G + rr * G + d % G] =
              pr + rr < nr && d < nd ? plain.data[r * plain.row_stride + (d0 + d) * plain.depth_stride]
                                     : T{};
        }
  };
  return src;
}

// a and b as PackSources (B seen transposed: n rows of depth k), strides kept.
template <typename T>
std::pair<PackSource<T>, PackSource<T>> plain_sources(const py::array& a, const py::array& b,
                                                      const T* a_data, const T* b_data) {
  require(a.ndim() == 2 && b.ndim() == 2 && a.shape(1) == b.shape(0),
          "gemm needs a [M, K] and b [K, N]");
  PackSource<T> a_src, b_src;
  a_src.rows = a.shape(0);
  a_src.depth = a.shape(1);
  a_src.data = a_data;
  a_src.row_stride = element_stride(a, 0);
  a_src.depth_stride = element_stride(a, 1);
  b_src.rows = b.shape(1);
  b_src.depth = b.shape(0);
  b_src.data = b_data;
  b_src.row_stride = element_stride(b, 1);
  b_src.depth_stride = element_stride(b, 0);
  return {a_src, b_src};
}

// C = A·B summed in Acc into out [m, n] (see gemm_np for the flags).
template <typename In, typename Acc>
void run_into(const PackSource<In>& a_src, const PackSource<In>& b_src, Acc* out, int threads,
              bool accumulate_in_output) {
  const int64_t n = b_src.rows;
  py::gil_scoped_release release;
  ThreadRunner runner(threads);
  if (accumulate_in_output) {
    gemm<In>(a_src, b_src, TileEpilogue<Acc>(), runner, GemmAccumulator<Acc>{out, n});
  } else {
    gemm<In>(a_src, b_src,
             [&](int64_t i0, int64_t mi, int64_t j0, int64_t nj, const Acc* tile, int64_t ld) {
               for (int64_t i = 0; i < mi; ++i)
                 for (int64_t j = 0; j < nj; ++j) out[(i0 + i) * n + j0 + j] = tile[i * ld + j];
             },
             runner);
  }
}

// C = A·B. `accumulate_in_output`: the engine sums in C itself (the float ops' path);
// otherwise in its scratch, with an epilogue copying tiles out. `callback_packing`:
// both operands packed through PackSource::pack.
template <typename T>
Array<T> gemm_np(const StridedArray<T>& a, const StridedArray<T>& b, int threads,
                 bool accumulate_in_output, bool callback_packing) {
  auto [a_src, b_src] = plain_sources<T>(a, b, a.data(), b.data());
  if (callback_packing) {
    a_src = through_callback(a_src);
    b_src = through_callback(b_src);
  }
  Array<T> c({a_src.rows, b_src.rows});
  run_into<T, T>(a_src, b_src, c.mutable_data(), threads, accumulate_in_output);
  return c;
}

// C = A·B for bfloat16 a and b given as their bits (uint16 arrays: numpy has no
// bfloat16), C in float32, run the way the ops run bf16 (gemm_bf16_kernel): as bf16
// pairs, or widened to float while packing (then always through a packing callback).
Array<float> gemm_bf16_np(const StridedArray<uint16_t>& a, const StridedArray<uint16_t>& b,
                          int threads, bool accumulate_in_output, bool callback_packing) {
  static_assert(sizeof(bfloat16_t) == sizeof(uint16_t), "bfloat16_t is its bits");
  auto [a_src, b_src] = plain_sources<bfloat16_t>(a, b, reinterpret_cast<const bfloat16_t*>(a.data()),
                                                  reinterpret_cast<const bfloat16_t*>(b.data()));
  Array<float> c({a_src.rows, b_src.rows});
  with_packed_type<bfloat16_t>(0, [&](auto packed) {
    using In = typename decltype(packed)::type;
    auto source = [&](const PackSource<bfloat16_t>& plain) {
      PackSource<In> src = strided_source<bfloat16_t, In>(plain.data, plain.rows, plain.depth,
                                                          plain.row_stride, plain.depth_stride);
      if constexpr (std::is_same_v<In, bfloat16_t>) {
        if (callback_packing) src = through_callback(src);
      }
      return src;
    };
    run_into<In, float>(source(a_src), source(b_src), c.mutable_data(), threads,
                        accumulate_in_output);
  });
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
  m.def("gemm_bf16", &gemm_bf16_np, py::arg("a"), py::arg("b"), py::arg("threads") = 1,
        py::arg("accumulate_in_output") = true, py::arg("callback_packing") = false,
        "C = A·B in float32 for bfloat16 A and B given as uint16 bits, on the engine's bf16 "
        "path (bf16_kernel()).");
  m.def("bf16_kernel", [] { return std::string(gemm_bf16_kernel()); },
        "How the GEMM engine runs bfloat16: 'amx' (bf16 pairs on AMX tiles), 'dpbf16' (bf16 pairs, "
        "AVX512_BF16) or 'widen' (widened to float32).");
  m.def("bf16_runs_on_pairs", &gemm_packs_bf16, py::arg("reuse"),
        "Whether a bfloat16 product whose weights are reused by `reuse` rows (a dense layer's "
        "batch; 0: any shape) runs on bf16 pairs here rather than widened to float32: always "
        "with amx; with dpbf16 always on AMD and for at most 64 rows on Intel; never with widen.");
  m.def(
      "gemm_blocking",
      [](const std::string& dtype) {
        require(dtype == "float32" || dtype == "float64" || dtype == "bfloat16",
                "dtype must be 'float32', 'float64' or 'bfloat16', got '" + dtype + "'");
        if (dtype == "bfloat16") {
          require(gemm_packs_bf16(0), "the engine widens bfloat16 to float32 here (bf16_kernel() "
                                     "is 'widen'): ask for float32's blocking");
        }
        const GemmBlocking b = dtype == "float32"   ? gemm_blocking<float>()
                               : dtype == "float64" ? gemm_blocking<double>()
                                                    : gemm_blocking<bfloat16_t>();
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
