// Fused dense kernels: y = act(x·W + b) forward, and dx, dW, db in one backward.
#pragma once

#include <cstdint>

#include "activation.h"
#include "parallel.h"

namespace fusedlayers {

// x [m, k], w [k, n], bias [n] or null, y [m, n]; z [m, n] receives the
// pre-activation when non-null (the backward needs it for some activations).
template <typename T>
struct DenseForwardArgs {
  const T* x = nullptr;
  const T* w = nullptr;
  const T* bias = nullptr;
  T* y = nullptr;
  T* z = nullptr;
  int64_t m = 0, k = 0, n = 0;
  ActivationSpec act;
};

// dy, y (and z when grad_needs_preactivation) [m, n]; x [m, k]; w [k, n].
// Writes dx [m, k], dw [k, n] and, when non-null, db [n].
template <typename T>
struct DenseBackwardArgs {
  const T* dy = nullptr;
  const T* x = nullptr;
  const T* w = nullptr;
  const T* y = nullptr;
  const T* z = nullptr;
  T* dx = nullptr;
  T* dw = nullptr;
  T* db = nullptr;
  int64_t m = 0, k = 0, n = 0;
  ActivationSpec act;
};

template <typename T>
void dense_forward(const DenseForwardArgs<T>& args, TaskRunner& runner);

template <typename T>
void dense_backward(const DenseBackwardArgs<T>& args, TaskRunner& runner);

}  // namespace fusedlayers
