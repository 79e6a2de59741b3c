#include "csrc/kernels/cuda/dense.h"

#include "csrc/kernels/cuda/activation_grad.h"
#include "csrc/kernels/cuda/checks.h"
#include "csrc/kernels/cuda/cublaslt_dense.h"
#include "csrc/kernels/cuda/epilogue.cuh"
#include "csrc/kernels/cuda/gemm.cuh"
#include "csrc/kernels/cuda/operand_views.cuh"

namespace fusedlayers::gpu {
namespace {

Status check_dense_sizes(DType dtype, ActivationSpec act, int64_t m, int64_t k, int64_t n) {
  FL_RETURN_IF_ERROR(check_dtype_and_activation(dtype, act));
  if (checked_product({m, k}) < 0 || checked_product({k, n}) < 0 || checked_product({m, n}) < 0) {
    return Status::InvalidArgument("dense sizes m, k, n must be >= 0 and their products fit int64");
  }
  return Status::Ok();
}

}  // namespace

Status check_dense_forward_args(const DenseForwardArgs& a) {
  FL_RETURN_IF_ERROR(check_dense_sizes(a.dtype, a.act, a.m, a.k, a.n));
  FL_RETURN_IF_ERROR(check_pointer(a.x, a.m * a.k, "x"));
  FL_RETURN_IF_ERROR(check_pointer(a.kernel, a.k * a.n, "kernel"));
  FL_RETURN_IF_ERROR(check_pointer(a.y, a.m * a.n, "y"));
  if (a.workspace == nullptr && a.workspace_bytes > 0) {
    return Status::InvalidArgument("workspace is null but workspace_bytes > 0");
  }
  return Status::Ok();
}

Status dense_forward(const DenseForwardArgs& a, cudaStream_t stream) {
  FL_RETURN_IF_ERROR(check_dense_forward_args(a));
  if (cublaslt_dense_forward_applies(a)) return cublaslt_dense_forward(a, stream);
  return with_storage_type(a.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const BiasActivationEpilogue<T> epilogue{static_cast<T*>(a.y), a.n,
                                             static_cast<const T*>(a.bias),
                                             static_cast<T*>(a.z), a.act};
    return launch_gemm<T>(a.m, a.n, a.k, RowMajorView<T>{static_cast<const T*>(a.x), a.k},
                          RowMajorView<T>{static_cast<const T*>(a.kernel), a.n}, epilogue,
                          a.allow_tf32, stream);
  });
}

Status check_dense_backward_args(const DenseBackwardArgs& a) {
  FL_RETURN_IF_ERROR(check_dense_sizes(a.dtype, a.act, a.m, a.k, a.n));
  FL_RETURN_IF_ERROR(check_pointer(a.dy, a.m * a.n, "dy"));
  FL_RETURN_IF_ERROR(check_pointer(a.y, a.m * a.n, "y"));
  FL_RETURN_IF_ERROR(check_preactivation(a.act, a.z, a.m * a.n));
  if (a.dx) FL_RETURN_IF_ERROR(check_pointer(a.kernel, a.k * a.n, "kernel"));
  if (a.dkernel) FL_RETURN_IF_ERROR(check_pointer(a.x, a.m * a.k, "x"));
  return check_backward_workspace(a.dtype, a.m, a.n, a.workspace, a.workspace_bytes);
}

Status dense_backward(const DenseBackwardArgs& a, cudaStream_t stream) {
  FL_RETURN_IF_ERROR(check_dense_backward_args(a));

  ActivationGradArgs g;
  g.dtype = a.dtype;
  g.rows = a.m;
  g.cols = a.n;
  g.dy = a.dy;
  g.y = a.y;
  g.z = a.z;
  g.dbias = a.dbias;
  g.act = a.act;
  g.workspace = a.workspace;
  g.workspace_bytes = a.workspace_bytes;
  const void* dz = nullptr;
  FL_RETURN_IF_ERROR(activation_grad(g, stream, &dz));

  return with_storage_type(a.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const RowMajorView<T> dz_view{static_cast<const T*>(dz), a.n};
    if (a.dx) {  // dx [m, k] = dz [m, n] · kernelᵀ
      const TransposedView<RowMajorView<T>> kernel_t{{static_cast<const T*>(a.kernel), a.n}};
      FL_RETURN_IF_ERROR(launch_gemm<T>(a.m, a.k, a.n, dz_view, kernel_t,
                                        plain_store<T>(a.dx, a.k), a.allow_tf32, stream));
    }
    if (a.dkernel) {  // dkernel [k, n] = xᵀ · dz
      const TransposedView<RowMajorView<T>> x_t{{static_cast<const T*>(a.x), a.k}};
      FL_RETURN_IF_ERROR(launch_gemm<T>(a.k, a.n, a.m, x_t, dz_view,
                                        plain_store<T>(a.dkernel, a.n), a.allow_tf32, stream));
    }
    return Status::Ok();
  });
}

}  // namespace fusedlayers::gpu
