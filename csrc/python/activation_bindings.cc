// numpy entry points into the float activation loops (the ISA-dispatched vector path
// every float32, bfloat16 and float16 kernel uses), tested against float64 references.
#include "csrc/kernels/activation_kernels.h"
#include "csrc/python/bindings.h"

namespace fusedlayers {
namespace {

Array<float> activation_forward_np(const std::string& activation, const Array<float>& z,
                                   float slope) {
  const ActivationSpec act = parse_activation(activation, slope);
  Array<float> y(std::vector<py::ssize_t>(z.shape(), z.shape() + z.ndim()));
  std::copy(z.data(), z.data() + z.size(), y.mutable_data());
  activation_forward_inplace<float>(act, y.mutable_data(), y.size());
  return y;
}

// act'(y, z) itself (the kernels multiply it into dy); z may be None when the
// activation's derivative reads y only.
Array<float> activation_derivative_np(const std::string& activation, const Array<float>& y,
                                      const py::object& z, float slope) {
  const ActivationSpec act = parse_activation(activation, slope);
  Array<float> z_arr;
  if (grad_needs_preactivation(act)) {
    require(!z.is_none(), "this activation's derivative needs the pre-activation z");
  }
  if (!z.is_none()) {
    z_arr = z.cast<Array<float>>();
    require(z_arr.ndim() == y.ndim() &&
                std::equal(y.shape(), y.shape() + y.ndim(), z_arr.shape()),
            "z must have y's shape");
  }
  Array<float> d(std::vector<py::ssize_t>(y.shape(), y.shape() + y.ndim()));
  std::fill(d.mutable_data(), d.mutable_data() + d.size(), 1.0f);
  activation_derivative_multiply<float>(act, y.data(), z.is_none() ? nullptr : z_arr.data(),
                                        d.mutable_data(), d.size());
  return d;
}

}  // namespace

void register_activation_bindings(py::module_& m) {
  m.def("activation_forward", &activation_forward_np, py::arg("activation"), py::arg("z"),
        py::arg("leaky_slope") = kDefaultLeakySlope,
        "act(z) on a float32 array by the ISA-dispatched vector loop.");
  m.def("activation_derivative", &activation_derivative_np, py::arg("activation"), py::arg("y"),
        py::arg("z") = py::none(), py::arg("leaky_slope") = kDefaultLeakySlope,
        "act'(y, z) on float32 arrays by the ISA-dispatched vector loop.");
  m.def("activation_kernel_isa", [] { return std::string(active_activation_kernels().isa); },
        "The ISA the float activation loops dispatched to.");
}

}  // namespace fusedlayers
