// Argument checks shared by the launchers, run before any memory is touched.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>

#include "csrc/kernels/activation.h"
#include "csrc/kernels/conv_geometry.h"
#include "csrc/kernels/cuda/dtype.h"
#include "csrc/kernels/cuda/status.h"

namespace fusedlayers::gpu {

// dtype and activation inside their enums.
Status check_dtype_and_activation(DType dtype, ActivationSpec act);

// The product of non-negative `sizes`, or -1 when one is negative or it overflows
// int64 (so callers can reject it by one comparison).
int64_t checked_product(std::initializer_list<int64_t> sizes);

// A tensor of `elements` elements needs a pointer unless it is empty.
Status check_pointer(const void* p, int64_t elements, const char* name);

// Every size, stride, dilation and padding of the geometry in range (as
// conv2d_geometry builds it), and every tensor's element count within int64.
Status check_conv_geometry(const ConvGeometry& g);

// The activation's derivative needs z, and z is missing.
Status check_preactivation(ActivationSpec act, const void* z, int64_t elements);

}  // namespace fusedlayers::gpu
