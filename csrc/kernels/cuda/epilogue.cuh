// The GEMM's epilogue: out = act(acc + bias), the pre-activation saved when asked,
// applied to each output element while its tile is still in shared memory. With no
// bias, no z and linear it is a plain store (the gradient GEMMs).
#pragma once

#include <cstdint>

#include "csrc/kernels/activation.h"
#include "csrc/kernels/cuda/device_types.cuh"

namespace fusedlayers::gpu {

template <typename T>
struct BiasActivationEpilogue {
  T* out;
  int64_t ld;
  const T* bias = nullptr;  // [cols] or null
  T* z = nullptr;           // the pre-activation, same layout as out, or null
  // A runtime switch rather than a template parameter: it runs once per output
  // element (negligible next to the tile's k loop, and uniform across a warp), and
  // keeps the instantiations, and the compile time, twelve times smaller.
  ActivationSpec act;

  __device__ void operator()(int64_t row, int64_t col, float acc) const {
    if (bias) acc += to_float(bias[col]);
    const int64_t i = row * ld + col;
    if (z) z[i] = from_float<T>(acc);
    out[i] = from_float<T>(activation_forward<float>(act, acc));
  }
};

template <typename T>
BiasActivationEpilogue<T> plain_store(void* out, int64_t ld) {
  return {static_cast<T*>(out), ld, nullptr, nullptr, ActivationSpec{Activation::kLinear}};
}

}  // namespace fusedlayers::gpu
