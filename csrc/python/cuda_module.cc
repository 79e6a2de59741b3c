// fusedlayers._native_cuda: the CUDA kernels on device pointers from any framework
// (CuPy, PyTorch), so they are tested and benchmarked without TensorFlow.
#include <cuda_runtime_api.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <limits>

#include "csrc/kernels/cuda/activation_grad.h"
#include "csrc/kernels/cuda/cublaslt_dense.h"
#include "csrc/python/cuda_bindings.h"

namespace fusedlayers {

void* device_pointer(const py::object& value, const char* name) {
  if (value.is_none()) return nullptr;
  require(py::isinstance<py::int_>(value),
          std::string(name) + " must be a device address (int) or None");
  const long long address = value.cast<long long>();
  require(address >= 0, std::string(name) + " must be a non-negative address");
  return reinterpret_cast<void*>(static_cast<std::uintptr_t>(address));
}

cudaStream_t stream_from_int(const py::object& value) {
  require(py::isinstance<py::int_>(value), "stream must be an int (a cudaStream_t handle)");
  const long long handle = value.cast<long long>();
  require(handle >= 0, "stream must be a non-negative handle");
  return reinterpret_cast<cudaStream_t>(static_cast<std::uintptr_t>(handle));
}

gpu::DType parse_dtype(const std::string& name) {
  gpu::DType dtype;
  require(gpu::dtype_from_name(name, &dtype),
          "dtype must be one of {float32, float16, bfloat16}, got '" + name + "'");
  return dtype;
}

void require_device_memory(std::initializer_list<std::pair<const void*, const char*>> pointers) {
  for (const auto& [p, name] : pointers) {
    if (p == nullptr) continue;
    cudaPointerAttributes attributes;
    const cudaError_t e = cudaPointerGetAttributes(&attributes, p);
    if (e != cudaSuccess) {
      cudaGetLastError();
      throw std::runtime_error(std::string("cannot query ") + name + ": " + cudaGetErrorString(e));
    }
    require(attributes.type == cudaMemoryTypeDevice || attributes.type == cudaMemoryTypeManaged,
            std::string(name) + " is not device memory");
  }
}

void raise_if_error(const gpu::Status& status) {
  if (status.ok()) return;
  if (status.code == gpu::Status::Code::kInvalidArgument) throw py::value_error(status.message);
  throw std::runtime_error(status.message);
}

namespace {

// Never raises: without a driver or device it says why in "error".
py::dict device_info() {
  py::dict info;
  int runtime = 0, driver = 0, count = 0;
  cudaRuntimeGetVersion(&runtime);
  cudaDriverGetVersion(&driver);
  info["runtime_version"] = runtime;
  info["driver_version"] = driver;
  info["cublaslt"] = gpu::kHaveCublasLt;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    cudaGetLastError();
    info["device_count"] = 0;
    info["error"] = std::string(cudaGetErrorString(e));
    return info;
  }
  info["device_count"] = count;
  py::list devices;
  for (int d = 0; d < count; ++d) {
    cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, d) != cudaSuccess) continue;
    py::dict dev;
    dev["name"] = std::string(prop.name);
    dev["compute_capability"] = py::make_tuple(prop.major, prop.minor);
    dev["total_memory"] = prop.totalGlobalMem;
    dev["multiprocessors"] = prop.multiProcessorCount;
    devices.append(dev);
  }
  info["devices"] = devices;
  return info;
}

}  // namespace
}  // namespace fusedlayers

PYBIND11_MODULE(_native_cuda, m) {
  using namespace fusedlayers;
  m.doc() = "fusedlayers CUDA kernels on device pointers (no TensorFlow): test and benchmark entry points";
  m.def("device_info", &device_info, "Runtime and driver versions and the visible devices.");
  m.attr("ARCHITECTURES") = FUSEDLAYERS_CUDA_ARCHITECTURES;
  m.attr("HAVE_CUBLASLT") = gpu::kHaveCublasLt;
  m.def(
      "backward_workspace_bytes",
      [](int64_t rows, int64_t cols, const std::string& dtype) {
        const std::size_t bytes = gpu::backward_workspace_bytes(parse_dtype(dtype), rows, cols);
        require(bytes > 0, "rows and cols must be >= 0 and their product fit int64");
        return bytes;
      },
      py::arg("rows"), py::arg("cols"), py::arg("dtype"),
      "Workspace bytes a backward needs for an output of rows (positions) x cols (channels).");
  register_cuda_dense_bindings(m);
  register_cuda_conv_bindings(m);
}
