// Element types the kernels store (float, double, bfloat16, float16) and the type
// they accumulate in; 16-bit types are plain uint16 wrappers, layout-compatible with
// Eigen::bfloat16 / Eigen::half, so the TF glue can pass its buffers straight in.
#pragma once

#include <cstdint>
#include <cstring>

namespace fusedlayers {

struct bfloat16_t {
  uint16_t bits;
};
struct float16_t {
  uint16_t bits;
};

inline float to_float(bfloat16_t v) {
  const uint32_t u = static_cast<uint32_t>(v.bits) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// Round to nearest even, NaN kept quiet (the rounding of Eigen and TF).
inline bfloat16_t bfloat16_from_float(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return bfloat16_t{static_cast<uint16_t>((u >> 16) | 0x40)};
  u += 0x7fffu + ((u >> 16) & 1u);
  return bfloat16_t{static_cast<uint16_t>(u >> 16)};
}

inline float to_float(float16_t v) {
  const uint32_t sign = static_cast<uint32_t>(v.bits & 0x8000u) << 16;
  uint32_t exp = (v.bits >> 10) & 0x1fu;
  uint32_t mant = v.bits & 0x3ffu;
  uint32_t u;
  if (exp == 0x1f) {
    u = sign | 0x7f800000u | (mant << 13);
  } else if (exp != 0) {
    u = sign | ((exp + 112u) << 23) | (mant << 13);
  } else if (mant == 0) {
    u = sign;
  } else {  // subnormal half: normalise
    exp = 113;
    while ((mant & 0x400u) == 0) {
      mant <<= 1;
      --exp;
    }
    u = sign | (exp << 23) | ((mant & 0x3ffu) << 13);
  }
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// Round to nearest even, with overflow to infinity and gradual underflow.
inline float16_t float16_from_float(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t abs = u & 0x7fffffffu;
  if (abs >= 0x7f800000u) {  // inf or NaN
    return float16_t{static_cast<uint16_t>(sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u : 0u))};
  }
  if (abs >= 0x477ff000u) return float16_t{static_cast<uint16_t>(sign | 0x7c00u)};  // rounds past max
  if (abs < 0x38800000u) {  // below the smallest normal half: subnormal or zero
    if (abs < 0x33000000u) return float16_t{sign};
    const uint32_t exp = abs >> 23;
    const uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126u - exp;  // 14 + (112 - exp) + 1 - 1
    uint32_t half_mant = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1u);
    const uint32_t halfway = 1u << (shift - 1u);
    if (rem > halfway || (rem == halfway && (half_mant & 1u))) ++half_mant;
    return float16_t{static_cast<uint16_t>(sign | half_mant)};
  }
  uint32_t rounded = abs + 0xfffu + ((abs >> 13) & 1u);
  return float16_t{static_cast<uint16_t>(sign | ((rounded - 0x38000000u) >> 13))};
}

// Storage type -> accumulation type: float for float/bf16/f16, double for double.
template <typename T>
struct AccumulatorOf {
  using type = float;
};
template <>
struct AccumulatorOf<double> {
  using type = double;
};
template <typename T>
using acc_t = typename AccumulatorOf<T>::type;

template <typename Acc>
inline Acc load_as(float v) { return static_cast<Acc>(v); }
template <typename Acc>
inline Acc load_as(double v) { return static_cast<Acc>(v); }
template <typename Acc>
inline Acc load_as(bfloat16_t v) { return static_cast<Acc>(to_float(v)); }
template <typename Acc>
inline Acc load_as(float16_t v) { return static_cast<Acc>(to_float(v)); }

template <typename T>
struct StoreAs {
  template <typename Acc>
  static T from(Acc v) { return static_cast<T>(v); }
};
template <>
struct StoreAs<bfloat16_t> {
  template <typename Acc>
  static bfloat16_t from(Acc v) { return bfloat16_from_float(static_cast<float>(v)); }
};
template <>
struct StoreAs<float16_t> {
  template <typename Acc>
  static float16_t from(Acc v) { return float16_from_float(static_cast<float>(v)); }
};

template <typename T, typename Acc>
inline T store_as(Acc v) { return StoreAs<T>::from(v); }

}  // namespace fusedlayers
