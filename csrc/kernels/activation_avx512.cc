// The float activation loops on 512-bit vectors (compiled with the AVX-512 flags;
// called only when cpu_features() reports them).
#include "activation_vector.h"

namespace fusedlayers {
namespace {

struct Avx512Width {
  static constexpr int kBytes = 64;
};

constexpr ActivationKernels kKernels = act_generic::make_activation_kernels<Avx512Width>("avx512");

}  // namespace

const ActivationKernels& avx512_activation_kernels() { return kKernels; }

}  // namespace fusedlayers
