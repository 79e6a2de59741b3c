// Convolutions by explicit lowering, a few images at a time (see conv_lowered.cc):
// every product a plain GEMM, at the cost of a lowered matrix of about
// taps / stride^2 times the big tensor's size per group of images.
#pragma once

#include "conv.h"

namespace fusedlayers {

// Whether g's lowered matrix (and big tensor) for one image fit the group budget, so
// the lowered method applies. FUSEDLAYERS_CONV_METHOD=lowered or implicit forces
// one method for every shape (read once; tests use it to cover both).
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
