#include "csrc/kernels/cuda/activation_grad.h"

#include <algorithm>

#include "csrc/kernels/cuda/checks.h"
#include "csrc/kernels/cuda/device_types.cuh"
#include "csrc/kernels/cuda/gemm.cuh"

namespace fusedlayers::gpu {
namespace {

// A block covers 32 columns (one warp's coalesced row segment) x 8 row lanes over one
// chunk of rows. The chunking depends on the sizes only, and every sum runs in a
// fixed order, so the bias gradient is bitwise reproducible (no atomics).
constexpr int kCols = 32;
constexpr int kRowLanes = 8;
constexpr int64_t kMaxChunks = 1024;
constexpr int64_t kMinRowsPerChunk = 256;
constexpr std::size_t kAlignment = 256;

int64_t num_chunks(int64_t rows) {
  return std::min(kMaxChunks, (rows + kMinRowsPerChunk - 1) / kMinRowsPerChunk);
}

std::size_t round_up(std::size_t bytes) { return (bytes + kAlignment - 1) / kAlignment * kAlignment; }

// dz = dy * act'(y, z) and, when partials is not null, partials[chunk, col] = the sum
// of dz over the chunk's rows.
template <typename T>
__global__ void __launch_bounds__(kCols * kRowLanes)
    activation_grad_kernel(int64_t rows, int64_t cols, int64_t rows_per_chunk, const T* dy,
                           const T* y, const T* z, ActivationSpec act, T* dz, float* partials) {
  const int64_t col = static_cast<int64_t>(blockIdx.x) * kCols + threadIdx.x;
  const int64_t first = static_cast<int64_t>(blockIdx.y) * rows_per_chunk;
  const int64_t end = min(rows, first + rows_per_chunk);
  float sum = 0.0f;
  if (col < cols) {
    for (int64_t r = first + threadIdx.y; r < end; r += kRowLanes) {
      const int64_t i = r * cols + col;
      const float d = to_float(dy[i]) *
                      activation_derivative<float>(act, to_float(y[i]), z ? to_float(z[i]) : 0.0f);
      dz[i] = from_float<T>(d);
      sum += d;
    }
  }
  if (partials == nullptr) return;
  __shared__ float lane_sums[kRowLanes][kCols + 1];
  lane_sums[threadIdx.y][threadIdx.x] = sum;
  __syncthreads();
  if (threadIdx.y == 0 && col < cols) {
    float total = 0.0f;
    for (int lane = 0; lane < kRowLanes; ++lane) total += lane_sums[lane][threadIdx.x];
    partials[blockIdx.y * cols + col] = total;
  }
}

// dbias[col] = the sum of partials[:, col], chunk by chunk in order.
template <typename T>
__global__ void sum_chunks_kernel(int64_t chunks, int64_t cols, const float* partials, T* dbias) {
  const int64_t col = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (col >= cols) return;
  float total = 0.0f;
  for (int64_t c = 0; c < chunks; ++c) total += partials[c * cols + col];
  dbias[col] = from_float<T>(total);
}

}  // namespace

std::size_t backward_workspace_bytes(DType dtype, int64_t rows, int64_t cols) {
  const int64_t elements = checked_product({rows, cols});
  const int64_t partials = checked_product({num_chunks(rows), cols});
  if (elements < 0 || partials < 0 || dtype_size(dtype) == 0) return 0;
  // Never 0 for valid sizes, so 0 can mean invalid.
  return std::max(kAlignment,
                  round_up(elements * dtype_size(dtype)) + round_up(partials * sizeof(float)));
}

Status check_backward_workspace(DType dtype, int64_t rows, int64_t cols, const void* workspace,
                                std::size_t workspace_bytes) {
  const std::size_t needed = backward_workspace_bytes(dtype, rows, cols);
  if (needed == 0) return Status::InvalidArgument("backward output size overflows");
  if (workspace == nullptr || workspace_bytes < needed) {
    return Status::InvalidArgument("workspace must hold " + std::to_string(needed) +
                                   " bytes (backward_workspace_bytes), got " +
                                   std::to_string(workspace == nullptr ? 0 : workspace_bytes));
  }
  return Status::Ok();
}

Status activation_grad(const ActivationGradArgs& a, cudaStream_t stream, const void** dz) {
  FL_RETURN_IF_ERROR(
      check_backward_workspace(a.dtype, a.rows, a.cols, a.workspace, a.workspace_bytes));
  *dz = a.workspace;
  return with_storage_type(a.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* dz_out = static_cast<T*>(a.workspace);
    float* partials =
        a.dbias ? reinterpret_cast<float*>(static_cast<char*>(a.workspace) +
                                           round_up(a.rows * a.cols * sizeof(T)))
                : nullptr;
    const int64_t chunks = num_chunks(a.rows);
    if (chunks > 0 && a.cols > 0) {
      const int64_t rows_per_chunk = (a.rows + chunks - 1) / chunks;
      const dim3 grid(static_cast<unsigned>((a.cols + kCols - 1) / kCols),
                      static_cast<unsigned>(chunks));
      activation_grad_kernel<T><<<grid, dim3(kCols, kRowLanes), 0, stream>>>(
          a.rows, a.cols, rows_per_chunk, static_cast<const T*>(a.dy),
          static_cast<const T*>(a.y), static_cast<const T*>(a.z), a.act, dz_out, partials);
      FL_RETURN_IF_ERROR(last_launch_status("activation gradient launch"));
    }
    if (a.dbias && a.cols > 0) {
      constexpr int kThreads = 256;
      sum_chunks_kernel<T><<<static_cast<unsigned>((a.cols + kThreads - 1) / kThreads), kThreads,
                             0, stream>>>(chunks, a.cols, partials, static_cast<T*>(a.dbias));
      FL_RETURN_IF_ERROR(last_launch_status("bias gradient launch"));
    }
    return Status::Ok();
  });
}

}  // namespace fusedlayers::gpu
