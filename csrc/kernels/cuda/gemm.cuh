// The one GEMM every CUDA op runs: C[m, n] = A[m, k] · B[k, n], A and B read through
// operand views, each output element handed to an epilogue. A block computes a
// kTileM x kTileN tile: it stages kTileK-deep slices of A and B in shared memory,
// multiplies them with the dtype's math policy (tensor cores via WMMA for float16 /
// bfloat16, and for float32 only when TF32 is allowed; CUDA-core FMAs otherwise), all
// accumulating in float32, then parks the accumulators in the same shared memory so
// the epilogue writes whole rows (coalesced) whatever the math policy's layout.
#pragma once

#include <mma.h>

#include <climits>
#include <cstdint>
#include <type_traits>

#include "csrc/kernels/cuda/device_types.cuh"
#include "csrc/kernels/cuda/status.h"

namespace fusedlayers::gpu {

namespace gemm {

constexpr int kTileM = 64;
constexpr int kTileN = 64;
constexpr int kTileK = 32;
constexpr int kThreads = 256;
// Accumulator rows padded by 4 floats: WMMA's store wants a multiple of 4 and it
// spreads the epilogue's column reads over the banks.
constexpr int kAccLd = kTileN + 4;

// Shared-memory operand tiles of element type S; rows padded by kPad elements (16
// bytes: WMMA needs 32-byte-aligned fragments and ld a multiple of 16 bytes).
template <typename S>
struct OperandTiles {
  static constexpr int kPad = 16 / sizeof(S);
  static constexpr int kLdA = kTileK + kPad;
  static constexpr int kLdB = kTileN + kPad;
  S a[kTileM * kLdA];
  S b[kTileK * kLdB];
};

// CUDA cores: each thread owns a 4 x 4 block of outputs at rows ty + 16 i, columns
// tx + 16 j, so a warp reads one broadcast A value and 16 consecutive B values.
struct SimtMath {
  using Smem = float;
  using Tiles = OperandTiles<float>;
  struct Accumulators {
    float v[4][4];
  };

  __device__ static void zero(Accumulators& acc) {
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) acc.v[i][j] = 0.0f;
  }

  __device__ static void multiply(Accumulators& acc, const Tiles& t) {
    const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
#pragma unroll 8
    for (int kk = 0; kk < kTileK; ++kk) {
      float a[4], b[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) a[i] = t.a[(ty + 16 * i) * Tiles::kLdA + kk];
#pragma unroll
      for (int j = 0; j < 4; ++j) b[j] = t.b[kk * Tiles::kLdB + tx + 16 * j];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc.v[i][j] = fmaf(a[i], b[j], acc.v[i][j]);
    }
  }

  __device__ static void store(const Accumulators& acc, float* c) {
    const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) c[(ty + 16 * i) * kAccLd + tx + 16 * j] = acc.v[i][j];
  }
};

// Tensor cores through WMMA: 8 warps as 4 (rows) x 2 (columns), each warp a 16 x 32
// output block of two 16 x 16 float accumulator fragments. FragIn is the fragment's
// input type (half, __nv_bfloat16, or wmma::precision::tf32 read from float tiles).
template <typename SmemT, typename FragIn, int kFragK>
struct WmmaMath {
  using Smem = SmemT;
  using Tiles = OperandTiles<SmemT>;
  using FragA = nvcuda::wmma::fragment<nvcuda::wmma::matrix_a, 16, 16, kFragK, FragIn,
                                       nvcuda::wmma::row_major>;
  using FragB = nvcuda::wmma::fragment<nvcuda::wmma::matrix_b, 16, 16, kFragK, FragIn,
                                       nvcuda::wmma::row_major>;
  using FragC = nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, kFragK, float>;
  static constexpr bool kTf32 = std::is_same_v<FragIn, nvcuda::wmma::precision::tf32>;
  struct Accumulators {
    FragC c[2];
  };

  __device__ static int warp_row() { return (threadIdx.x / 32) / 2 * 16; }
  __device__ static int warp_col() { return (threadIdx.x / 32) % 2 * 32; }

  __device__ static void zero(Accumulators& acc) {
    nvcuda::wmma::fill_fragment(acc.c[0], 0.0f);
    nvcuda::wmma::fill_fragment(acc.c[1], 0.0f);
  }

  // float values loaded into a TF32 fragment must be rounded to TF32 first.
  template <typename Frag>
  __device__ static void round_if_tf32(Frag& f) {
    if constexpr (kTf32) {
#pragma unroll
      for (int e = 0; e < f.num_elements; ++e) f.x[e] = nvcuda::wmma::__float_to_tf32(f.x[e]);
    }
  }

  __device__ static void multiply(Accumulators& acc, const Tiles& t) {
#pragma unroll
    for (int kk = 0; kk < kTileK; kk += kFragK) {
      FragA a;
      nvcuda::wmma::load_matrix_sync(a, t.a + warp_row() * Tiles::kLdA + kk, Tiles::kLdA);
      round_if_tf32(a);
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        FragB b;
        nvcuda::wmma::load_matrix_sync(b, t.b + kk * Tiles::kLdB + warp_col() + 16 * j,
                                       Tiles::kLdB);
        round_if_tf32(b);
        nvcuda::wmma::mma_sync(acc.c[j], a, b, acc.c[j]);
      }
    }
  }

  __device__ static void store(const Accumulators& acc, float* c) {
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      nvcuda::wmma::store_matrix_sync(c + warp_row() * kAccLd + warp_col() + 16 * j, acc.c[j],
                                      kAccLd, nvcuda::wmma::mem_row_major);
    }
  }
};

static_assert(kThreads == 256 && kTileM == 64 && kTileN == 64,
              "SimtMath (16 x 16 threads of 4 x 4) and WmmaMath (4 x 2 warps of 16 x 32) "
              "are laid out for a 64 x 64 tile and 256 threads");

// The math policy for storage type T.
template <typename T, bool kAllowTf32>
struct MathFor;
template <>
struct MathFor<float, false> {
  using type = SimtMath;
};
template <>
struct MathFor<float, true> {
  using type = WmmaMath<float, nvcuda::wmma::precision::tf32, 8>;
};
template <bool kAllowTf32>
struct MathFor<__half, kAllowTf32> {
  using type = WmmaMath<__half, __half, 16>;
};
template <bool kAllowTf32>
struct MathFor<__nv_bfloat16, kAllowTf32> {
  using type = WmmaMath<__nv_bfloat16, __nv_bfloat16, 16>;
};

// Copies rows [row0, row0 + kRows) x cols [col0, col0 + kCols) of `view` (zero past
// rows x cols) into `tile`; consecutive threads walk the view's contiguous index.
template <int kRows, int kCols, int kLd, typename S, typename View>
__device__ void load_tile(const View& view, int64_t row0, int64_t col0, int64_t rows,
                          int64_t cols, S* tile) {
  for (int i = threadIdx.x; i < kRows * kCols; i += kThreads) {
    const int r = View::kColsContiguous ? i / kCols : i % kRows;
    const int c = View::kColsContiguous ? i % kCols : i / kRows;
    const int64_t gr = row0 + r, gc = col0 + c;
    S v = from_float<S>(0.0f);
    if (gr < rows && gc < cols) {
      if constexpr (std::is_same_v<S, float>) {
        v = to_float(view.at(gr, gc));
      } else {
        v = view.at(gr, gc);
      }
    }
    tile[r * kLd + c] = v;
  }
}

template <typename Math, typename AView, typename BView, typename Epilogue>
__global__ void __launch_bounds__(kThreads)
    gemm_kernel(int64_t m, int64_t n, int64_t k, AView a, BView b, Epilogue epilogue) {
  using Tiles = typename Math::Tiles;
  constexpr int kSmemBytes = sizeof(Tiles) > sizeof(float) * kTileM * kAccLd
                                 ? sizeof(Tiles)
                                 : sizeof(float) * kTileM * kAccLd;
  // Raw bytes: the operand tiles and, after the k loop, the accumulators share them
  // (16-bit element types have constructors, which __shared__ objects may not).
  __shared__ alignas(128) unsigned char smem[kSmemBytes];
  Tiles& tiles = *reinterpret_cast<Tiles*>(smem);
  float* acc_tile = reinterpret_cast<float*>(smem);

  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * kTileM;
  const int64_t col0 = static_cast<int64_t>(blockIdx.y) * kTileN;

  typename Math::Accumulators acc;
  Math::zero(acc);
  for (int64_t k0 = 0; k0 < k; k0 += kTileK) {
    load_tile<kTileM, kTileK, Tiles::kLdA>(a, row0, k0, m, k, tiles.a);
    load_tile<kTileK, kTileN, Tiles::kLdB>(b, k0, col0, k, n, tiles.b);
    __syncthreads();
    Math::multiply(acc, tiles);
    __syncthreads();
  }
  Math::store(acc, acc_tile);
  __syncthreads();
  for (int i = threadIdx.x; i < kTileM * kTileN; i += kThreads) {
    const int r = i / kTileN, c = i % kTileN;
    if (row0 + r < m && col0 + c < n) epilogue(row0 + r, col0 + c, acc_tile[r * kAccLd + c]);
  }
}

}  // namespace gemm

// Status of the last launch on this thread.
inline Status last_launch_status(const char* what) {
  const cudaError_t e = cudaGetLastError();
  if (e == cudaSuccess) return Status::Ok();
  return Status::CudaError(std::string(what) + ": " + cudaGetErrorString(e));
}

// C[m, n] = epilogue(A[m, k] · B[k, n]) for storage type T; nothing to do when C is
// empty (k = 0 leaves the accumulators zero: C = epilogue(0)).
template <typename T, typename AView, typename BView, typename Epilogue>
Status launch_gemm(int64_t m, int64_t n, int64_t k, const AView& a, const BView& b,
                   const Epilogue& epilogue, bool allow_tf32, cudaStream_t stream) {
  if (m == 0 || n == 0) return Status::Ok();
  const int64_t row_tiles = (m + gemm::kTileM - 1) / gemm::kTileM;
  const int64_t col_tiles = (n + gemm::kTileN - 1) / gemm::kTileN;
  if (row_tiles > INT_MAX || col_tiles > 65535) {
    return Status::InvalidArgument("GEMM too large for one launch: " + std::to_string(m) + " x " +
                                   std::to_string(n));
  }
  const dim3 grid(static_cast<unsigned>(row_tiles), static_cast<unsigned>(col_tiles));
  if (allow_tf32) {
    gemm::gemm_kernel<typename gemm::MathFor<T, true>::type>
        <<<grid, gemm::kThreads, 0, stream>>>(m, n, k, a, b, epilogue);
  } else {
    gemm::gemm_kernel<typename gemm::MathFor<T, false>::type>
        <<<grid, gemm::kThreads, 0, stream>>>(m, n, k, a, b, epilogue);
  }
  return last_launch_status("GEMM launch");
}

}  // namespace fusedlayers::gpu
