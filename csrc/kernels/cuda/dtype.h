// The element types the CUDA kernels store; they accumulate in float32 always.
#pragma once

#include <cstddef>
#include <string>

namespace fusedlayers::gpu {

enum class DType { kFloat32, kFloat16, kBFloat16 };

// "float32", "float16" or "bfloat16" (numpy / torch names); false for anything else.
bool dtype_from_name(const std::string& name, DType* out);
const char* dtype_name(DType dtype);
// 0 for a value outside the enum (launchers reject it by this).
std::size_t dtype_size(DType dtype);

}  // namespace fusedlayers::gpu
