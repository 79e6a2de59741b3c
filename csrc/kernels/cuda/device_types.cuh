// Device-side element types: the storage type of each DType and its float32
// conversions, and a host dispatcher from the runtime DType to the type.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "csrc/kernels/cuda/dtype.h"
#include "csrc/kernels/cuda/status.h"

namespace fusedlayers::gpu {

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

// Round to nearest even, as the CPU kernels' store_as.
template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half from_float<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

template <typename T>
__device__ __forceinline__ T zero_of() { return from_float<T>(0.0f); }

template <typename T>
struct TypeTag {
  using type = T;
};

// Calls f(TypeTag<T>{}) for the storage type of `dtype`.
template <typename F>
Status with_storage_type(DType dtype, F&& f) {
  switch (dtype) {
    case DType::kFloat32: return f(TypeTag<float>{});
    case DType::kFloat16: return f(TypeTag<__half>{});
    case DType::kBFloat16: return f(TypeTag<__nv_bfloat16>{});
  }
  return Status::InvalidArgument("unknown dtype");
}

}  // namespace fusedlayers::gpu
