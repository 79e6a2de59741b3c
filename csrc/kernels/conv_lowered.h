// Convolutions by explicit lowering, a few images at a time (see conv_lowered.cc):
// every product a plain GEMM, at the cost of a lowered matrix of about
// taps / stride^2 times the big tensor's size per group of images.
#pragma once

#include "conv.h"

namespace fusedlayers {

// The method FUSEDLAYERS_CONV_METHOD=lowered, implicit or winograd forces for every
// shape it applies to (read once; tests use it to cover each); kByShape when unset.
enum class ConvMethod { kByShape, kLowered, kImplicit, kWinograd };
ConvMethod forced_conv_method();

// Whether g's lowered matrix (and big tensor) for one image fit the group budget, so
// the lowered method applies (always when forced, never when implicit is).
bool conv_lowered_fits(const ConvGeometry& g);

template <typename T>
void lowered_conv2d_forward(const ConvForwardArgs<T>& args, TaskRunner& runner);
template <typename T>
void lowered_conv2d_backward(const ConvBackwardArgs<T>& args, TaskRunner& runner);
template <typename T>
void lowered_conv2d_transpose_forward(const ConvForwardArgs<T>& args, TaskRunner& runner);
template <typename T>
void lowered_conv2d_transpose_backward(const ConvBackwardArgs<T>& args, TaskRunner& runner);

}  // namespace fusedlayers
