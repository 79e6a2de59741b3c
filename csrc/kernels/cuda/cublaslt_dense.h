// Dense forward through cuBLASLt, for the cases its epilogues compute exactly what
// ours do: linear (BIAS or DEFAULT) and relu (RELU_BIAS or RELU) with no saved
// pre-activation. Compiled only when CMake finds cuBLASLt (FUSEDLAYERS_HAVE_CUBLASLT);
// otherwise nothing applies and every call takes our own kernels.
#pragma once

#include <cuda_runtime_api.h>

#include "csrc/kernels/cuda/dense.h"
#include "csrc/kernels/cuda/status.h"

namespace fusedlayers::gpu {

#ifdef FUSEDLAYERS_HAVE_CUBLASLT
inline constexpr bool kHaveCublasLt = true;
bool cublaslt_dense_forward_applies(const DenseForwardArgs& args);
// Call only when cublaslt_dense_forward_applies(args); args already validated.
Status cublaslt_dense_forward(const DenseForwardArgs& args, cudaStream_t stream);
#else
inline constexpr bool kHaveCublasLt = false;
inline bool cublaslt_dense_forward_applies(const DenseForwardArgs&) { return false; }
inline Status cublaslt_dense_forward(const DenseForwardArgs&, cudaStream_t) {
  return Status::CudaError("built without cuBLASLt");
}
#endif

}  // namespace fusedlayers::gpu
