// Fused conv2d and conv2d_transpose (NHWC, Keras kernel layouts) on CUDA as implicit
// GEMM with the dense layer's bias + activation epilogue, forward and backward.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>

#include "csrc/kernels/activation.h"
#include "csrc/kernels/conv_geometry.h"
#include "csrc/kernels/cuda/dtype.h"
#include "csrc/kernels/cuda/status.h"

namespace fusedlayers::gpu {

// conv2d gathers the big tensor into the small one; conv2d_transpose scatters the
// small one into the big one (see ConvGeometry).
enum class ConvKind { kConv2d, kConv2dTranspose };

// x is the op's input, y its output (z its pre-activation when not null), kernel
// [kh, kw, big channels, small channels], bias [y channels] or null.
struct ConvForwardArgs {
  DType dtype = DType::kFloat32;
  ConvKind kind = ConvKind::kConv2d;
  ConvGeometry geometry;
  const void* x = nullptr;
  const void* kernel = nullptr;
  const void* bias = nullptr;
  void* y = nullptr;
  void* z = nullptr;
  ActivationSpec act;
  bool allow_tf32 = false;
};

// Every argument checked without touching memory (conv_forward runs it first).
Status check_conv_forward_args(const ConvForwardArgs& args);
Status conv_forward(const ConvForwardArgs& args, cudaStream_t stream);

// dy, y (and z when grad_needs_preactivation) have y's shape; dx, dkernel, dbias are
// each skipped when null. workspace must hold backward_workspace_bytes(dtype, y
// positions, y channels) bytes.
struct ConvBackwardArgs {
  DType dtype = DType::kFloat32;
  ConvKind kind = ConvKind::kConv2d;
  ConvGeometry geometry;
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

Status check_conv_backward_args(const ConvBackwardArgs& args);
Status conv_backward(const ConvBackwardArgs& args, cudaStream_t stream);

}  // namespace fusedlayers::gpu
