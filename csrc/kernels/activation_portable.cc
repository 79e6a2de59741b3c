// The float activation loops on 128-bit vectors for the baseline target (SSE2 on
// x86-64, no FMA): the fallback, and the path FUSEDLAYERS_ISA=portable forces.
#include "activation_vector.h"

namespace fusedlayers {
namespace {

struct PortableWidth {
  static constexpr int kBytes = 16;
};

constexpr ActivationKernels kKernels =
    act_generic::make_activation_kernels<PortableWidth>("portable");

}  // namespace

const ActivationKernels& portable_activation_kernels() { return kKernels; }

}  // namespace fusedlayers
