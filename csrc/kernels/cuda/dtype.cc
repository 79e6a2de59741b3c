#include "csrc/kernels/cuda/dtype.h"

namespace fusedlayers::gpu {

bool dtype_from_name(const std::string& name, DType* out) {
  for (const DType d : {DType::kFloat32, DType::kFloat16, DType::kBFloat16}) {
    if (name == dtype_name(d)) {
      *out = d;
      return true;
    }
  }
  return false;
}

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::kFloat32: return "float32";
    case DType::kFloat16: return "float16";
    case DType::kBFloat16: return "bfloat16";
  }
  return "unknown";
}

std::size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::kFloat32: return 4;
    case DType::kFloat16:
    case DType::kBFloat16: return 2;
  }
  return 0;
}

}  // namespace fusedlayers::gpu
