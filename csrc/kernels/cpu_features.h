// CPU features found at run time (cpuid + the OS's saved register state), which is
// what kernels dispatch on: wheels are built for baseline x86-64, never for the build
// machine's own instruction set.
#pragma once

#include <cstdint>
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
  bool amx_tile = false;
  bool amx_bf16 = false;
  // Data cache sizes in bytes as one core sees them (cpuid leaf 4 on Intel,
  // 0x8000001D on AMD, sysconf as a fallback); 0 when unknown.
  int64_t l1d_bytes = 0;
  int64_t l2_bytes = 0;
  int64_t l3_bytes = 0;
  std::string vendor;
  std::string brand;
};

// Detected once, on first use.
const CpuFeatures& cpu_features();

}  // namespace fusedlayers
