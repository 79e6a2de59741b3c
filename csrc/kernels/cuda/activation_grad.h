// The first step of every backward: dz = dy * act'(y, z) stored in the workspace, and
// the bias gradient as a deterministic column sum of dz, in one pass over dy.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "csrc/kernels/activation.h"
#include "csrc/kernels/cuda/dtype.h"
#include "csrc/kernels/cuda/status.h"

namespace fusedlayers::gpu {

// Bytes of workspace a backward over an output of `rows` x `cols` (positions x
// channels) needs: dz itself and the per-chunk column sums of the bias gradient.
// At least 256; 0 when the sizes are negative or overflow.
std::size_t backward_workspace_bytes(DType dtype, int64_t rows, int64_t cols);

// The workspace is there and large enough.
Status check_backward_workspace(DType dtype, int64_t rows, int64_t cols, const void* workspace,
                                std::size_t workspace_bytes);

// Fills dz (the workspace's start) and dbias when not null; returns dz.
struct ActivationGradArgs {
  DType dtype = DType::kFloat32;
  int64_t rows = 0, cols = 0;
  const void* dy = nullptr;
  const void* y = nullptr;
  const void* z = nullptr;
  void* dbias = nullptr;
  ActivationSpec act;
  void* workspace = nullptr;
  std::size_t workspace_bytes = 0;
};

// Arguments are the caller's to validate (the dense and conv launchers do); this
// checks the workspace again.
Status activation_grad(const ActivationGradArgs& args, cudaStream_t stream, const void** dz);

}  // namespace fusedlayers::gpu
