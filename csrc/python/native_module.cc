// fusedlayers._native: build information, the CPU features found at run time, and
// numpy entry points into csrc/kernels, so the kernels are tested without TensorFlow.
#include <pybind11/stl.h>

#include <iterator>

#include "csrc/kernels/cpu_features.h"
#include "csrc/python/bindings.h"

namespace fusedlayers {
namespace {

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
  d["amx_tile"] = f.amx_tile;
  d["amx_bf16"] = f.amx_bf16;
  d["l1d_bytes"] = f.l1d_bytes;
  d["l2_bytes"] = f.l2_bytes;
  d["l3_bytes"] = f.l3_bytes;
  return d;
}

}  // namespace
}  // namespace fusedlayers

PYBIND11_MODULE(_native, m) {
  using namespace fusedlayers;
  m.doc() = "fusedlayers native kernels (no TensorFlow): build info, CPU features, test entry points";
  m.def("cpu_features", &cpu_features_dict, "CPU features detected at run time.");
  m.def("activation_names", [] {
    return std::vector<std::string>(std::begin(kActivationNames), std::end(kActivationNames));
  });
  m.def("compiler", [] { return std::string(__VERSION__); });
  register_dense_bindings(m);
  register_gemm_bindings(m);
  register_conv_bindings(m);
  register_activation_bindings(m);
}
