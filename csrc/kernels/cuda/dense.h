// Fused dense layer on CUDA: y = act(x·kernel + bias) and its fused gradient, on raw
// device pointers (row-major, any alignment) and a caller's stream and workspace.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "csrc/kernels/activation.h"
#include "csrc/kernels/cuda/dtype.h"
#include "csrc/kernels/cuda/status.h"

namespace fusedlayers::gpu {

// x [m, k], kernel [k, n], bias [n] or null, y [m, n]; z [m, n] receives the
// pre-activation when not null (the backward needs it when
// grad_needs_preactivation(act)). A pointer may be null only when its tensor is empty.
struct DenseForwardArgs {
  DType dtype = DType::kFloat32;
  int64_t m = 0, k = 0, n = 0;
  const void* x = nullptr;
  const void* kernel = nullptr;
  const void* bias = nullptr;
  void* y = nullptr;
  void* z = nullptr;
  ActivationSpec act;
  bool allow_tf32 = false;  // float32 only: tensor cores at TF32 precision
  // Optional, for cuBLASLt's heuristics (the kernels here need none).
  void* workspace = nullptr;
  std::size_t workspace_bytes = 0;
};

// Every argument checked without touching memory (dense_forward runs it first; a
// binding may run it before its own device-side checks).
Status check_dense_forward_args(const DenseForwardArgs& args);
Status dense_forward(const DenseForwardArgs& args, cudaStream_t stream);

// dy, y [m, n] (z [m, n] too when grad_needs_preactivation(act)); outputs dx [m, k],
// dkernel [k, n], dbias [n], each skipped when null. workspace must hold
// backward_workspace_bytes(dtype, m, n) bytes.
struct DenseBackwardArgs {
  DType dtype = DType::kFloat32;
  int64_t m = 0, k = 0, n = 0;
  const void* dy = nullptr;
  const void* x = nullptr;
  const void* kernel = nullptr;
  const void* y = nullptr;
  const void* z = nullptr;
  void* dx = nullptr;
  void* dkernel = nullptr;
  void* dbias = nullptr;
  ActivationSpec act;
  bool allow_tf32 = false;
  void* workspace = nullptr;
  std::size_t workspace_bytes = 0;
};

Status check_dense_backward_args(const DenseBackwardArgs& args);
Status dense_backward(const DenseBackwardArgs& args, cudaStream_t stream);

}  // namespace fusedlayers::gpu
