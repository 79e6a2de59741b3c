// Conv2D and Conv2DTranspose, forward and backward, by Winograd's minimal filtering
// (conv_winograd.cc): fewer multiplications than a direct convolution, for float32
// kernels of up to 3 taps per stride phase (k3 s1, k2 s1, k4 s2, k6 s2, ...).
#pragma once

#include "conv.h"

namespace fusedlayers {

// Whether the convolution g (either op, either pass) runs by Winograd's algorithm: its
// geometry and memory bounds allow it and it saves enough multiplications to repay the
// transforms (or FUSEDLAYERS_CONV_METHOD forces it, where it applies). float32 only: the
// caller checks the type.
bool conv_winograd_fits(const ConvGeometry& g);

void winograd_conv2d_forward(const ConvForwardArgs<float>& args, TaskRunner& runner);
void winograd_conv2d_backward(const ConvBackwardArgs<float>& args, TaskRunner& runner);
void winograd_conv2d_transpose_forward(const ConvForwardArgs<float>& args, TaskRunner& runner);
void winograd_conv2d_transpose_backward(const ConvBackwardArgs<float>& args, TaskRunner& runner);

}  // namespace fusedlayers
