// Shared pieces of the _native_cuda module: device pointers and streams taken as
// Python ints (CuPy's arr.data.ptr, PyTorch's tensor.data_ptr()), and the launchers'
// Status turned into ValueError (bad arguments) or RuntimeError (CUDA errors).
#pragma once

#include <pybind11/pybind11.h>

#include <initializer_list>
#include <string>

#include "csrc/kernels/cuda/dtype.h"
#include "csrc/kernels/cuda/status.h"
#include "csrc/python/bindings.h"

namespace fusedlayers {

// None -> null; a non-negative int -> that address; anything else raises ValueError.
void* device_pointer(const py::object& value, const char* name);

// 0 is the legacy default stream; any other int is a cudaStream_t handle.
cudaStream_t stream_from_int(const py::object& value);

gpu::DType parse_dtype(const std::string& name);

// Raises ValueError for each non-null pointer that is not device (or managed) memory,
// so a host address never reaches a kernel. Needs a device: call after every other
// check.
void require_device_memory(std::initializer_list<std::pair<const void*, const char*>> pointers);

// Raises for a launcher's error.
void raise_if_error(const gpu::Status& status);

void register_cuda_dense_bindings(py::module_& m);
void register_cuda_conv_bindings(py::module_& m);

}  // namespace fusedlayers
