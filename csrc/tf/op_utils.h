// Helpers every op's glue shares: the activation attributes, dtype mapping to the
// kernels' storage types, and overflow-checked shape arithmetic.
#pragma once

#include <string>

#include "csrc/kernels/activation.h"
#include "csrc/kernels/dtype.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/framework/types.h"
#include "tensorflow/core/util/overflow.h"

namespace fusedlayers {

// The attribute block every fused op carries.
#define FUSEDLAYERS_ACTIVATION_ATTRS                                                  \
  Attr("activation: string = 'linear'").Attr("leaky_slope: float = 0.2")

// Reads and checks the activation attributes (used by kernels and shape functions).
template <typename Context>
absl::Status read_activation(Context* ctx, ActivationSpec* out) {
  std::string name;
  TF_RETURN_IF_ERROR(ctx->GetAttr("activation", &name));
  TF_RETURN_IF_ERROR(ctx->GetAttr("leaky_slope", &out->slope));
  if (!activation_from_name(name, &out->kind)) {
    return absl::InvalidArgumentError("activation must be one of {" + activation_name_list() +
                                      "}, got '" + name + "'");
  }
  if (!std::isfinite(out->slope)) {
    return absl::InvalidArgumentError("leaky_slope must be finite, got " +
                                      std::to_string(out->slope));
  }
  return absl::OkStatus();
}

// TF element type -> the kernels' storage type (same size and layout).
template <typename T>
struct KernelType {
  using type = T;
};
template <>
struct KernelType<Eigen::bfloat16> {
  using type = bfloat16_t;
};
template <>
struct KernelType<Eigen::half> {
  using type = float16_t;
};

template <typename T>
const typename KernelType<T>::type* kernel_ptr(const tensorflow::Tensor& t) {
  return reinterpret_cast<const typename KernelType<T>::type*>(t.flat<T>().data());
}
template <typename T>
typename KernelType<T>::type* kernel_ptr(tensorflow::Tensor* t) {
  return reinterpret_cast<typename KernelType<T>::type*>(t->flat<T>().data());
}

// a * b, or an error naming `what` when the product leaves int64.
inline absl::Status checked_mul(int64_t a, int64_t b, const char* what, int64_t* out) {
  const int64_t r = tensorflow::MultiplyWithoutOverflow(a, b);
  if (r < 0) {
    return absl::InvalidArgumentError(std::string(what) + " overflows int64: " +
                                      std::to_string(a) + " * " + std::to_string(b));
  }
  *out = r;
  return absl::OkStatus();
}

inline std::string shape_string(const tensorflow::TensorShape& s) { return s.DebugString(); }

}  // namespace fusedlayers
