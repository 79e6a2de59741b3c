#include "csrc/kernels/cuda/checks.h"

#include <limits>

namespace fusedlayers::gpu {

Status check_dtype_and_activation(DType dtype, ActivationSpec act) {
  if (dtype_size(dtype) == 0) return Status::InvalidArgument("unknown dtype");
  const int kind = static_cast<int>(act.kind);
  if (kind < 0 || kind >= static_cast<int>(Activation::kCount)) {
    return Status::InvalidArgument("unknown activation; expected one of {" +
                                   activation_name_list() + "}");
  }
  return Status::Ok();
}

int64_t checked_product(std::initializer_list<int64_t> sizes) {
  int64_t product = 1;
  for (const int64_t s : sizes) {
    if (s < 0) return -1;
    if (s != 0 && product > std::numeric_limits<int64_t>::max() / s) return -1;
    product *= s;
  }
  return product;
}

Status check_pointer(const void* p, int64_t elements, const char* name) {
  if (p == nullptr && elements > 0) {
    return Status::InvalidArgument(std::string(name) + " is null but has " +
                                   std::to_string(elements) + " elements");
  }
  return Status::Ok();
}

namespace {

Status check_axis(const ConvAxis& a, const char* name) {
  if (a.big < 1 || a.small < 1 || a.kernel < 1 || a.stride < 1 || a.dilation < 1 ||
      a.pad_before < 0) {
    return Status::InvalidArgument(std::string("conv geometry: ") + name +
                                   " axis has a size, kernel, stride or dilation below 1 or a "
                                   "negative padding");
  }
  // The views compute small * stride + tap * dilation in int64 and bounds-check it.
  if (checked_product({a.small, a.stride}) < 0 || checked_product({a.kernel, a.dilation}) < 0) {
    return Status::InvalidArgument(std::string("conv geometry: ") + name + " axis overflows");
  }
  return Status::Ok();
}

}  // namespace

Status check_conv_geometry(const ConvGeometry& g) {
  FL_RETURN_IF_ERROR(check_axis(g.h, "height"));
  FL_RETURN_IF_ERROR(check_axis(g.w, "width"));
  if (g.batch < 0 || g.big_channels < 1 || g.small_channels < 1) {
    return Status::InvalidArgument("conv geometry: batch must be >= 0 and channels >= 1");
  }
  if (checked_product({g.batch, g.h.big, g.w.big, g.big_channels}) < 0 ||
      checked_product({g.batch, g.h.small, g.w.small, g.small_channels}) < 0 ||
      checked_product({g.h.kernel, g.w.kernel, g.big_channels, g.small_channels}) < 0) {
    return Status::InvalidArgument("conv geometry: a tensor's element count overflows int64");
  }
  return Status::Ok();
}

Status check_preactivation(ActivationSpec act, const void* z, int64_t elements) {
  if (grad_needs_preactivation(act) && z == nullptr && elements > 0) {
    return Status::InvalidArgument(std::string("the gradient of ") +
                                   kActivationNames[static_cast<int>(act.kind)] +
                                   " needs the pre-activation z");
  }
  return Status::Ok();
}

}  // namespace fusedlayers::gpu
