// The activation table: every activation's forward and derivative side by side,
// shared by every kernel (the TF glue and the Python layer use the same names).
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>

// Marks the table's functions callable from CUDA device code too (the CUDA kernels'
// epilogues share this table); empty for the host compiler, so the CPU build is unchanged.
#ifdef __CUDACC__
#define FL_HOST_DEVICE __host__ __device__
#else
#define FL_HOST_DEVICE
#endif

namespace fusedlayers {

// Order is part of the op ABI: the TF ops carry the activation as a string, and the
// glue maps it to this enum through kActivationNames, so renumbering is safe but
// renaming is not.
enum class Activation : int {
  kLinear = 0,
  kRelu,
  kRelu6,
  kLeakyRelu,
  kElu,
  kSelu,
  kGelu,      // exact: 0.5 z (1 + erf(z / sqrt 2)), Keras's default gelu
  kGeluTanh,  // the tanh approximation
  kSigmoid,
  kTanh,
  kSilu,
  kSoftplus,
  kCount
};

inline constexpr const char* kActivationNames[] = {
    "linear", "relu", "relu6", "leaky_relu", "elu", "selu",
    "gelu", "gelu_tanh", "sigmoid", "tanh", "silu", "softplus"};
static_assert(sizeof(kActivationNames) / sizeof(kActivationNames[0]) ==
                  static_cast<int>(Activation::kCount),
              "every activation needs a name");

// Keras's keras.activations.leaky_relu default.
inline constexpr float kDefaultLeakySlope = 0.2f;

// Returns false when `name` is not in the table.
inline bool activation_from_name(const std::string& name, Activation* out) {
  for (int i = 0; i < static_cast<int>(Activation::kCount); ++i) {
    if (name == kActivationNames[i]) {
      *out = static_cast<Activation>(i);
      return true;
    }
  }
  return false;
}

inline std::string activation_name_list() {
  std::string all;
  for (int i = 0; i < static_cast<int>(Activation::kCount); ++i) {
    if (i) all += ", ";
    all += kActivationNames[i];
  }
  return all;
}

// An activation with its parameter (only leaky_relu has one).
struct ActivationSpec {
  Activation kind = Activation::kLinear;
  float slope = kDefaultLeakySlope;
};

namespace act_constants {
inline constexpr double kSeluAlpha = 1.6732632423543772848170429916717;
inline constexpr double kSeluScale = 1.0507009873554804934193349852946;
inline constexpr double kSqrtHalf = 0.70710678118654752440084436210485;
inline constexpr double kInvSqrt2Pi = 0.39894228040143267793994605993438;
inline constexpr double kSqrt2OverPi = 0.79788456080286535587989211986876;
inline constexpr double kGeluTanhCoeff = 0.044715;
}  // namespace act_constants

// The gradient needs the pre-activation z (rather than the output y) only for these,
// and for leaky_relu with a negative slope (y no longer tells the sign of z).
FL_HOST_DEVICE inline bool grad_needs_preactivation(ActivationSpec a) {
  switch (a.kind) {
    case Activation::kGelu:
    case Activation::kGeluTanh:
    case Activation::kSilu:
    case Activation::kSoftplus:
      return true;
    case Activation::kLeakyRelu:
      return a.slope < 0.0f;
    default:
      return false;
  }
}

template <typename Acc>
FL_HOST_DEVICE inline Acc stable_sigmoid(Acc z) {
  if (z >= Acc(0)) return Acc(1) / (Acc(1) + std::exp(-z));
  const Acc e = std::exp(z);
  return e / (Acc(1) + e);
}

template <typename Acc>
FL_HOST_DEVICE inline Acc activation_forward(ActivationSpec a, Acc z) {
  using namespace act_constants;
  switch (a.kind) {
    case Activation::kLinear: return z;
    case Activation::kRelu: return z > Acc(0) ? z : Acc(0);
    case Activation::kRelu6: return z > Acc(0) ? (z < Acc(6) ? z : Acc(6)) : Acc(0);
    case Activation::kLeakyRelu: return z > Acc(0) ? z : Acc(a.slope) * z;
    case Activation::kElu: return z > Acc(0) ? z : std::expm1(z);
    case Activation::kSelu:
      return Acc(kSeluScale) * (z > Acc(0) ? z : Acc(kSeluAlpha) * std::expm1(z));
    // erfc keeps full relative precision for negative z, where 1 + erf cancels.
    case Activation::kGelu: return Acc(0.5) * z * std::erfc(-z * Acc(kSqrtHalf));
    case Activation::kGeluTanh: {
      const Acc inner = Acc(kSqrt2OverPi) * (z + Acc(kGeluTanhCoeff) * z * z * z);
      return Acc(0.5) * z * (Acc(1) + std::tanh(inner));
    }
    case Activation::kSigmoid: return stable_sigmoid(z);
    case Activation::kTanh: return std::tanh(z);
    case Activation::kSilu: return z * stable_sigmoid(z);
    case Activation::kSoftplus:
      return std::log1p(std::exp(-std::fabs(z))) + (z > Acc(0) ? z : Acc(0));
    default: return z;
  }
}

// d act / d z, from whichever of y (output) and z (pre-activation) the activation
// needs (see grad_needs_preactivation); the other argument is ignored.
template <typename Acc>
FL_HOST_DEVICE inline Acc activation_derivative(ActivationSpec a, Acc y, Acc z) {
  using namespace act_constants;
  switch (a.kind) {
    case Activation::kLinear: return Acc(1);
    case Activation::kRelu: return y > Acc(0) ? Acc(1) : Acc(0);
    case Activation::kRelu6: return (y > Acc(0) && y < Acc(6)) ? Acc(1) : Acc(0);
    case Activation::kLeakyRelu:
      if (a.slope < 0.0f) return z > Acc(0) ? Acc(1) : Acc(a.slope);
      return y > Acc(0) ? Acc(1) : Acc(a.slope);
    case Activation::kElu: return y > Acc(0) ? Acc(1) : y + Acc(1);
    // At z = 0 (y = 0) the right-hand slope, as TensorFlow's SeluGrad: the layers must
    // match stock there too (an exact zero pre-activation is rare but not impossible).
    case Activation::kSelu:
      return y < Acc(0) ? y + Acc(kSeluScale * kSeluAlpha) : Acc(kSeluScale);
    case Activation::kGelu:
      return Acc(0.5) * std::erfc(-z * Acc(kSqrtHalf)) +
             z * Acc(kInvSqrt2Pi) * std::exp(Acc(-0.5) * z * z);
    case Activation::kGeluTanh: {
      const Acc inner = Acc(kSqrt2OverPi) * (z + Acc(kGeluTanhCoeff) * z * z * z);
      const Acc t = std::tanh(inner);
      const Acc dinner = Acc(kSqrt2OverPi) * (Acc(1) + Acc(3 * kGeluTanhCoeff) * z * z);
      return Acc(0.5) * (Acc(1) + t) + Acc(0.5) * z * (Acc(1) - t * t) * dinner;
    }
    case Activation::kSigmoid: return y * (Acc(1) - y);
    case Activation::kTanh: return Acc(1) - y * y;
    case Activation::kSilu: {
      const Acc s = stable_sigmoid(z);
      return s * (Acc(1) + z * (Acc(1) - s));
    }
    case Activation::kSoftplus: return stable_sigmoid(z);
    default: return Acc(1);
  }
}

// Calls f(ActivationKind<K>{}) with the runtime kind as a compile-time constant, so
// the loops below see the switch of activation_forward / activation_derivative fold
// away and vectorize (relu, leaky_relu, ...), the table staying the one above.
template <Activation K>
using ActivationKind = std::integral_constant<Activation, K>;

template <typename F>
inline void with_activation_kind(Activation kind, F&& f) {
  switch (kind) {
    case Activation::kLinear: return f(ActivationKind<Activation::kLinear>{});
    case Activation::kRelu: return f(ActivationKind<Activation::kRelu>{});
    case Activation::kRelu6: return f(ActivationKind<Activation::kRelu6>{});
    case Activation::kLeakyRelu: return f(ActivationKind<Activation::kLeakyRelu>{});
    case Activation::kElu: return f(ActivationKind<Activation::kElu>{});
    case Activation::kSelu: return f(ActivationKind<Activation::kSelu>{});
    case Activation::kGelu: return f(ActivationKind<Activation::kGelu>{});
    case Activation::kGeluTanh: return f(ActivationKind<Activation::kGeluTanh>{});
    case Activation::kSigmoid: return f(ActivationKind<Activation::kSigmoid>{});
    case Activation::kTanh: return f(ActivationKind<Activation::kTanh>{});
    case Activation::kSilu: return f(ActivationKind<Activation::kSilu>{});
    case Activation::kSoftplus: return f(ActivationKind<Activation::kSoftplus>{});
    default: return f(ActivationKind<Activation::kLinear>{});
  }
}

// The float loops below, vectorized for the ISA picked at run time (activation_kernels.cc:
// the math of activation_vector.h, agreeing with the scalar table above to a few ulp).
void activation_forward_f32(ActivationSpec a, float* x, int64_t n);
void activation_derivative_multiply_f32(ActivationSpec a, const float* y, const float* z,
                                        float* dz, int64_t n);
// out[i, j] = act(tile[i, j] + bias[j]) over rows x cols (bias null: none), and
// z_out[i, j] the pre-activation when set; out and z_out share ld_out, out may be tile.
void activation_bias_forward_rows_f32(ActivationSpec a, const float* tile, int64_t ld_tile,
                                      int64_t rows, int64_t cols, const float* bias, float* out,
                                      int64_t ld_out, float* z_out);

// x[j] = act(x[j]) for j < n.
template <typename Acc>
inline void activation_forward_inplace(ActivationSpec a, Acc* x, int64_t n) {
  if constexpr (std::is_same_v<Acc, float>) {
    activation_forward_f32(a, x, n);
  } else {
    with_activation_kind(a.kind, [&](auto kind) {
      const ActivationSpec fixed{decltype(kind)::value, a.slope};
      for (int64_t j = 0; j < n; ++j) x[j] = activation_forward<Acc>(fixed, x[j]);
    });
  }
}

// dz[j] *= act'(y[j], z[j]) for j < n; z may be null when the derivative reads y only.
template <typename Acc>
inline void activation_derivative_multiply(ActivationSpec a, const Acc* y, const Acc* z, Acc* dz,
                                           int64_t n) {
  if constexpr (std::is_same_v<Acc, float>) {
    activation_derivative_multiply_f32(a, y, z, dz, n);
  } else {
    with_activation_kind(a.kind, [&](auto kind) {
      const ActivationSpec fixed{decltype(kind)::value, a.slope};
      if (z) {
        for (int64_t j = 0; j < n; ++j) dz[j] *= activation_derivative<Acc>(fixed, y[j], z[j]);
      } else {
        for (int64_t j = 0; j < n; ++j) dz[j] *= activation_derivative<Acc>(fixed, y[j], Acc(0));
      }
    });
  }
}

}  // namespace fusedlayers
