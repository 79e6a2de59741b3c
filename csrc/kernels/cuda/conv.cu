#include "csrc/kernels/cuda/conv.h"

#include "csrc/kernels/cuda/activation_grad.h"
#include "csrc/kernels/cuda/checks.h"
#include "csrc/kernels/cuda/epilogue.cuh"
#include "csrc/kernels/cuda/gemm.cuh"
#include "csrc/kernels/cuda/operand_views.cuh"

namespace fusedlayers::gpu {
namespace {

// The GEMM sizes of the two directions between the tensors. Gather: [small
// positions, small C] = gather(big) [., taps * big C] · kernel [taps * big C, small
// C]. Scatter: [big positions, big C] = scatter(small) [., taps * small C] ·
// tap-transposed kernel [taps * small C, big C].
struct ConvSizes {
  int64_t big_positions, small_positions, taps;
};

ConvSizes sizes_of(const ConvGeometry& g) {
  return {g.batch * g.h.big * g.w.big, g.batch * g.h.small * g.w.small, g.h.kernel * g.w.kernel};
}

template <typename T>
Status gather_gemm(const ConvGeometry& g, const void* big, const void* kernel,
                   const BiasActivationEpilogue<T>& epilogue, bool allow_tf32,
                   cudaStream_t stream) {
  const ConvSizes s = sizes_of(g);
  return launch_gemm<T>(s.small_positions, g.small_channels, s.taps * g.big_channels,
                        ConvGatherView<T>{static_cast<const T*>(big), g},
                        RowMajorView<T>{static_cast<const T*>(kernel), g.small_channels},
                        epilogue, allow_tf32, stream);
}

template <typename T>
Status scatter_gemm(const ConvGeometry& g, const void* small, const void* kernel,
                    const BiasActivationEpilogue<T>& epilogue, bool allow_tf32,
                    cudaStream_t stream) {
  const ConvSizes s = sizes_of(g);
  return launch_gemm<T>(
      s.big_positions, g.big_channels, s.taps * g.small_channels,
      ConvScatterView<T>{static_cast<const T*>(small), g},
      TapTransposedKernelView<T>{static_cast<const T*>(kernel), g.big_channels, g.small_channels},
      epilogue, allow_tf32, stream);
}

// dkernel [taps * big C, small C] = gather(big)ᵀ · small_grad [small positions, small C].
template <typename T>
Status kernel_grad_gemm(const ConvGeometry& g, const void* big, const void* small_grad,
                        void* dkernel, bool allow_tf32, cudaStream_t stream) {
  const ConvSizes s = sizes_of(g);
  return launch_gemm<T>(
      s.taps * g.big_channels, g.small_channels, s.small_positions,
      TransposedView<ConvGatherView<T>>{{static_cast<const T*>(big), g}},
      RowMajorView<T>{static_cast<const T*>(small_grad), g.small_channels},
      plain_store<T>(dkernel, g.small_channels), allow_tf32, stream);
}

// Element counts of the op's x and y, by which tensor is big.
struct ConvCounts {
  int64_t x, y, y_channels, kernel;
};

ConvCounts counts_of(ConvKind kind, const ConvGeometry& g) {
  const ConvSizes s = sizes_of(g);
  const int64_t big = s.big_positions * g.big_channels;
  const int64_t small = s.small_positions * g.small_channels;
  const int64_t kernel = s.taps * g.big_channels * g.small_channels;
  if (kind == ConvKind::kConv2d) return {big, small, g.small_channels, kernel};
  return {small, big, g.big_channels, kernel};
}

Status check_conv(DType dtype, ConvKind kind, ActivationSpec act, const ConvGeometry& g) {
  FL_RETURN_IF_ERROR(check_dtype_and_activation(dtype, act));
  if (kind != ConvKind::kConv2d && kind != ConvKind::kConv2dTranspose) {
    return Status::InvalidArgument("unknown conv kind");
  }
  return check_conv_geometry(g);
}

}  // namespace

Status check_conv_forward_args(const ConvForwardArgs& a) {
  FL_RETURN_IF_ERROR(check_conv(a.dtype, a.kind, a.act, a.geometry));
  const ConvCounts n = counts_of(a.kind, a.geometry);
  FL_RETURN_IF_ERROR(check_pointer(a.x, n.x, "x"));
  FL_RETURN_IF_ERROR(check_pointer(a.kernel, n.kernel, "kernel"));
  return check_pointer(a.y, n.y, "y");
}

Status conv_forward(const ConvForwardArgs& a, cudaStream_t stream) {
  FL_RETURN_IF_ERROR(check_conv_forward_args(a));
  const ConvCounts n = counts_of(a.kind, a.geometry);
  return with_storage_type(a.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const BiasActivationEpilogue<T> epilogue{static_cast<T*>(a.y), n.y_channels,
                                             static_cast<const T*>(a.bias),
                                             static_cast<T*>(a.z), a.act};
    if (a.kind == ConvKind::kConv2d) {
      return gather_gemm<T>(a.geometry, a.x, a.kernel, epilogue, a.allow_tf32, stream);
    }
    return scatter_gemm<T>(a.geometry, a.x, a.kernel, epilogue, a.allow_tf32, stream);
  });
}

Status check_conv_backward_args(const ConvBackwardArgs& a) {
  FL_RETURN_IF_ERROR(check_conv(a.dtype, a.kind, a.act, a.geometry));
  const ConvCounts n = counts_of(a.kind, a.geometry);
  FL_RETURN_IF_ERROR(check_pointer(a.dy, n.y, "dy"));
  FL_RETURN_IF_ERROR(check_pointer(a.y, n.y, "y"));
  FL_RETURN_IF_ERROR(check_preactivation(a.act, a.z, n.y));
  if (a.dx) FL_RETURN_IF_ERROR(check_pointer(a.kernel, n.kernel, "kernel"));
  if (a.dkernel) FL_RETURN_IF_ERROR(check_pointer(a.x, n.x, "x"));
  return check_backward_workspace(a.dtype, n.y / n.y_channels, n.y_channels, a.workspace,
                                  a.workspace_bytes);
}

Status conv_backward(const ConvBackwardArgs& a, cudaStream_t stream) {
  FL_RETURN_IF_ERROR(check_conv_backward_args(a));
  const ConvCounts n = counts_of(a.kind, a.geometry);

  ActivationGradArgs g;
  g.dtype = a.dtype;
  g.rows = n.y / n.y_channels;
  g.cols = n.y_channels;
  g.dy = a.dy;
  g.y = a.y;
  g.z = a.z;
  g.dbias = a.dbias;
  g.act = a.act;
  g.workspace = a.workspace;
  g.workspace_bytes = a.workspace_bytes;
  const void* dz = nullptr;
  FL_RETURN_IF_ERROR(activation_grad(g, stream, &dz));

  // Each op's input gradient is the other op (linear, no bias); the kernel gradient
  // always pairs the big tensor's gather with the small tensor's gradient or input.
  const bool conv2d = a.kind == ConvKind::kConv2d;
  return with_storage_type(a.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (a.dx) {
      const int64_t x_channels = conv2d ? a.geometry.big_channels : a.geometry.small_channels;
      const auto store = plain_store<T>(a.dx, x_channels);
      FL_RETURN_IF_ERROR(
          conv2d ? scatter_gemm<T>(a.geometry, dz, a.kernel, store, a.allow_tf32, stream)
                 : gather_gemm<T>(a.geometry, dz, a.kernel, store, a.allow_tf32, stream));
    }
    if (a.dkernel) {
      const void* big = conv2d ? a.x : dz;
      const void* small = conv2d ? dz : a.x;
      FL_RETURN_IF_ERROR(
          kernel_grad_gemm<T>(a.geometry, big, small, a.dkernel, a.allow_tf32, stream));
    }
    return Status::Ok();
  });
}

}  // namespace fusedlayers::gpu
