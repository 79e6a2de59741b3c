// Fused conv2d and conv2d_transpose kernels (NHWC, kernel [kh, kw, big C, small C]):
// act(conv + bias) forward, and dx, dkernel, dbias in one backward, all as implicit
// GEMMs on the shared engine (no im2col buffer).
#pragma once

#include <cstdint>

#include "activation.h"
#include "conv_geometry.h"
#include "parallel.h"

namespace fusedlayers {

// x is the op's input, y its output: for conv2d x is big and y small, for
// conv2d_transpose the reverse. bias [y channels] or null; z (y's shape) receives the
// pre-activation when non-null.
template <typename T>
struct ConvForwardArgs {
  const T* x = nullptr;
  const T* kernel = nullptr;
  const T* bias = nullptr;
  T* y = nullptr;
  T* z = nullptr;
  ConvGeometry geometry;
  ActivationSpec act;
};

// dy, y (and z when grad_needs_preactivation) have y's shape. Writes dx (x's shape),
// dkernel (kernel's shape) and, when non-null, dbias [y channels].
template <typename T>
struct ConvBackwardArgs {
  const T* dy = nullptr;
  const T* x = nullptr;
  const T* kernel = nullptr;
  const T* y = nullptr;
  const T* z = nullptr;
  T* dx = nullptr;
  T* dkernel = nullptr;
  T* dbias = nullptr;
  ConvGeometry geometry;
  ActivationSpec act;
};

template <typename T>
void conv2d_forward(const ConvForwardArgs<T>& args, TaskRunner& runner);
template <typename T>
void conv2d_backward(const ConvBackwardArgs<T>& args, TaskRunner& runner);
template <typename T>
void conv2d_transpose_forward(const ConvForwardArgs<T>& args, TaskRunner& runner);
template <typename T>
void conv2d_transpose_backward(const ConvBackwardArgs<T>& args, TaskRunner& runner);

}  // namespace fusedlayers
