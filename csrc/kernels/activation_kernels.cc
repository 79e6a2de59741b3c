// Dispatch of the float activation loops to the ISA the GEMM engine chose.
#include "activation_kernels.h"

#include <cstring>

#include "gemm_kernels.h"

namespace fusedlayers {

const ActivationKernels& active_activation_kernels() {
  static const ActivationKernels& chosen = []() -> const ActivationKernels& {
    const char* isa = active_kernels().isa;
    if (std::strcmp(isa, "avx512") == 0) return avx512_activation_kernels();
    if (std::strcmp(isa, "avx2") == 0) return avx2_activation_kernels();
    return portable_activation_kernels();
  }();
  return chosen;
}

void activation_forward_f32(ActivationSpec a, float* x, int64_t n) {
  active_activation_kernels().forward_f32(a, x, n);
}

void activation_derivative_multiply_f32(ActivationSpec a, const float* y, const float* z,
                                        float* dz, int64_t n) {
  active_activation_kernels().derivative_f32(a, y, z, dz, n);
}

void activation_bias_forward_rows_f32(ActivationSpec a, const float* tile, int64_t ld_tile,
                                      int64_t rows, int64_t cols, const float* bias, float* out,
                                      int64_t ld_out, float* z_out) {
  active_activation_kernels().bias_forward_rows_f32(a, tile, ld_tile, rows, cols, bias, out, ld_out,
                                                    z_out);
}

}  // namespace fusedlayers
