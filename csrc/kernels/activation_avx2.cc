// The float activation loops on 256-bit vectors (compiled with -mavx2 -mfma; called
// only when cpu_features() reports both).
#include "activation_vector.h"

namespace fusedlayers {
namespace {

struct Avx2Width {
  static constexpr int kBytes = 32;
};

constexpr ActivationKernels kKernels = act_generic::make_activation_kernels<Avx2Width>("avx2");

}  // namespace

const ActivationKernels& avx2_activation_kernels() { return kKernels; }

}  // namespace fusedlayers
