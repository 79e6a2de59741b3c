// CPU features found at run time (cpuid + the OS's saved register state), which is
// what kernels dispatch on: wheels are built for baseline x86-64, never -march=native.
#pragma once

#include <string>

namespace fusedlayers {

struct CpuFeatures {
  bool sse42 = false;
  bool avx = false;
  bool avx2 = false;
  bool fma = false;
  bool f16c = false;
  bool avx512f = false;
  bool avx512bw = false;
  bool avx512vl = false;
  bool avx512dq = false;
  bool avx512_bf16 = false;
  bool avx512_fp16 = false;
  bool amx_bf16 = false;
  std::string vendor;
  std::string brand;
};

// Detected once, on first use.
const CpuFeatures& cpu_features();

}  // namespace fusedlayers
