// The float activation loops per ISA (activation_avx512.cc, activation_avx2.cc,
// activation_portable.cc, one math in activation_vector.h), picked at run time
// together with the GEMM's micro-kernels.
#pragma once

#include <cstdint>

#include "activation.h"

namespace fusedlayers {

// Trivial on purpose, like IsaKernels: built as constants in the ISA translation units.
struct ActivationKernels {
  const char* isa;
  void (*forward_f32)(ActivationSpec a, float* x, int64_t n);
  void (*derivative_f32)(ActivationSpec a, const float* y, const float* z, float* dz, int64_t n);
  void (*bias_forward_rows_f32)(ActivationSpec a, const float* tile, int64_t ld_tile, int64_t rows,
                                int64_t cols, const float* bias, float* out, int64_t ld_out,
                                float* z_out);
};

// Defined only when the build has that TU; callers check cpu_features() first.
const ActivationKernels& avx512_activation_kernels();
const ActivationKernels& avx2_activation_kernels();
const ActivationKernels& portable_activation_kernels();

// The ISA of active_kernels() (gemm_kernels.h), so FUSEDLAYERS_ISA and the CPU check
// decide both in one place.
const ActivationKernels& active_activation_kernels();

}  // namespace fusedlayers
