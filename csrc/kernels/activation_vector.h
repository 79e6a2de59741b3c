// The float activation loops written once over a vector width V (GCC/Clang vector
// extensions), branch-free, and instantiated by each ISA translation unit with its
// own flags (include this header only from activation_<isa>.cc). V provides kBytes,
// the vector size in bytes; V must be declared in that TU's anonymous namespace so
// that nothing here is shared with code compiled for another ISA.
//
// Each function agrees with the scalar table in activation.h to a few ulp (the tests
// compare both with float64 references), and gives inf / NaN where it does. The
// transcendental pieces: exp by Cody-Waite reduction and Cephes's degree 5 polynomial;
// expm1 from the same polynomial (relative accuracy near 0); tanh by Cephes's odd
// polynomial near 0 and 1 - 2 / (exp(2|x|) + 1) beyond; log1p by Cephes's logf
// polynomial; erfc(a) = exp(-a^2) t P(t), t = 1 / (1 + a / 2), P fitted (degree 10,
// 3e-9 relative) on a in [0, 10.1]. Clamps are written `x > hi ? hi : x` so NaN
// passes through them.
#pragma once

#include <cstdint>
#include <cstring>

#include "activation.h"
#include "activation_kernels.h"

namespace fusedlayers {
namespace act_generic {

template <class V>
struct Vec {
  typedef float F __attribute__((vector_size(V::kBytes)));
  typedef int32_t I __attribute__((vector_size(V::kBytes)));
  typedef double D __attribute__((vector_size(2 * V::kBytes)));  // as many lanes as F
  static constexpr int kLanes = V::kBytes / 4;
};

template <class V>
using F = typename Vec<V>::F;
template <class V>
using I = typename Vec<V>::I;
template <class V>
using D = typename Vec<V>::D;

template <class V>
inline F<V> splat(float c) {
  return F<V>{} + c;
}
template <class V>
inline F<V> load(const float* p) {
  F<V> v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <class V>
inline void store(float* p, F<V> v) {
  std::memcpy(p, &v, sizeof v);
}
template <class V>
inline F<V> select(I<V> mask, F<V> a, F<V> b) {
  return mask ? a : b;
}
template <class V>
inline F<V> abs(F<V> x) {
  return (F<V>)((I<V>)x & 0x7fffffff);
}
template <class V>
inline F<V> max0(F<V> x) {  // x > 0 ? x : 0, as the scalar table writes it (NaN -> 0)
  return select<V>(x > splat<V>(0.0f), x, splat<V>(0.0f));
}

// 2^n for integer-valued n in [-126, 127].
template <class V>
inline F<V> pow2(I<V> n) {
  return (F<V>)((n + 127) << 23);
}

// x = n ln2 + r, |r| <= ln2 / 2: n rounded to nearest by the 1.5 * 2^23 shift, ln2
// split in two so that n * kLn2Hi is exact (Cody-Waite).
template <class V>
inline F<V> reduce_ln2(F<V> x, I<V>* n) {
  constexpr float kLog2e = 1.44269504088896341f, kShift = 12582912.0f;
  constexpr float kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
  const F<V> k = (x * kLog2e + kShift) - kShift;
  *n = __builtin_convertvector(k, I<V>);
  return (x - k * kLn2Hi) - k * kLn2Lo;
}

// exp(r) - 1 for |r| <= ln2 / 2 (Cephes expf's polynomial).
template <class V>
inline F<V> expm1_reduced(F<V> r) {
  F<V> p = splat<V>(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  return p * (r * r) + r;
}

// exp(x): 0 below -104 (below half the smallest denormal), inf above 88.72. The
// scale 2^n goes in two steps so that denormal results keep their bits.
template <class V>
inline F<V> exp(F<V> x) {
  x = select<V>(x > splat<V>(89.0f), splat<V>(89.0f), x);
  x = select<V>(x < splat<V>(-104.0f), splat<V>(-104.0f), x);
  I<V> n;
  const F<V> r = reduce_ln2<V>(x, &n);
  const F<V> p = expm1_reduced<V>(r) + 1.0f;
  const I<V> half = n >> 1;
  return p * pow2<V>(half) * pow2<V>(n - half);
}

// exp(x) for x in [-250, 0] known better than float carries (exp's relative error is
// x's absolute error): the reduction in double, the polynomial in float. No clamp:
// GCC splits double vectors wider than the registers well, but not their selects.
template <class V>
inline F<V> exp_wide(D<V> x) {
  const double kShift = 6755399441055744.0;  // 1.5 * 2^52: rounds to an integer
  const D<V> k = (x * 1.4426950408889634 + kShift) - kShift;
  const F<V> r = __builtin_convertvector(x - k * 0.69314718055994531, F<V>);
  const I<V> n = __builtin_convertvector(k, I<V>);
  const F<V> p = expm1_reduced<V>(r) + 1.0f;
  const I<V> half = n >> 1;
  return p * pow2<V>(half) * pow2<V>(n - half);
}

// expm1(x) for x <= 88 (elu and selu take it for x <= 0): 2^n expm1(r) + (2^n - 1),
// which is expm1(r) itself for |x| <= ln2 / 2.
template <class V>
inline F<V> expm1(F<V> x) {
  x = select<V>(x > splat<V>(88.0f), splat<V>(88.0f), x);
  x = select<V>(x < splat<V>(-88.0f), splat<V>(-88.0f), x);
  I<V> n;
  const F<V> r = reduce_ln2<V>(x, &n);
  const F<V> scale = pow2<V>(n);
  return scale * expm1_reduced<V>(r) + (scale - 1.0f);
}

// log1p(e) for e in [0, 1]: log(1 + e) = k ln2 + log(1 + f), 1 + f in [sqrt(1/2), sqrt(2)]
// (Cephes logf's polynomial for log(1 + f)).
template <class V>
inline F<V> log1p_unit(F<V> e) {
  constexpr float kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
  const I<V> upper = e >= splat<V>(0.41421356f);
  const F<V> k = select<V>(upper, splat<V>(1.0f), splat<V>(0.0f));
  const F<V> f = select<V>(upper, e * 0.5f - 0.5f, e);
  const F<V> f2 = f * f;
  F<V> p = splat<V>(7.0376836292e-2f);
  p = p * f - 1.1514610310e-1f;
  p = p * f + 1.1676998740e-1f;
  p = p * f - 1.2420140846e-1f;
  p = p * f + 1.4249322787e-1f;
  p = p * f - 1.6668057665e-1f;
  p = p * f + 2.0000714765e-1f;
  p = p * f - 2.4999993993e-1f;
  p = p * f + 3.3333331174e-1f;
  const F<V> tail = p * (f2 * f) - 0.5f * f2 + k * kLn2Lo;
  return (f + tail) + k * kLn2Hi;
}

// tanh(x): Cephes tanhf's odd polynomial for |x| < 0.625 (relative accuracy near 0),
// 1 - 2 / (exp(2|x|) + 1) with x's sign beyond (1 from |x| = 9 on).
template <class V>
inline F<V> tanh(F<V> x) {
  const F<V> ax = abs<V>(x);
  const F<V> s = x * x;
  F<V> p = splat<V>(-5.70498872745e-3f);
  p = p * s + 2.06390887954e-2f;
  p = p * s - 5.37397155531e-2f;
  p = p * s + 1.33314422036e-1f;
  p = p * s - 3.33332819422e-1f;
  const F<V> near0 = p * s * x + x;
  const F<V> clamped = select<V>(ax > splat<V>(10.0f), splat<V>(10.0f), ax);
  const F<V> far = 1.0f - 2.0f / (exp<V>(clamped + clamped) + 1.0f);
  const F<V> signed_far = (F<V>)((I<V>)far | ((I<V>)x & (int32_t)0x80000000));
  return select<V>(ax < splat<V>(0.625f), near0, signed_far);
}

// sigmoid(x) and 1 - sigmoid(x) from e = exp(-|x|), each without cancellation.
template <class V>
inline void sigmoid_pair(F<V> e, I<V> nonneg, F<V>* s, F<V>* complement) {
  const F<V> r = 1.0f / (1.0f + e);
  *s = select<V>(nonneg, r, e * r);
  *complement = select<V>(nonneg, e * r, r);
}

template <class V>
inline F<V> sigmoid(F<V> e, I<V> nonneg) {
  return select<V>(nonneg, splat<V>(1.0f), e) / (1.0f + e);
}

template <class V>
inline F<V> sigmoid(F<V> x) {
  return sigmoid<V>(exp<V>(-abs<V>(x)), x >= splat<V>(0.0f));
}

// Exact gelu's pieces: with a = |z| / sqrt 2, erfc(a) = gauss * corr * tp, where
// gauss = exp(-hi / 2) for z^2 = hi + lo split exactly (Dekker), corr = 1 - lo / 2
// (rounding z^2 would cost z^2 * 2^-24 relative error, 1e-5 at z = -13), and
// tp = t P(t) = erfcx(a). gauss, the Gaussian the derivative needs too, is applied
// last so that a denormal result is rounded once.
template <class V>
struct GeluParts {
  F<V> gauss, corr, tp;
};

template <class V>
inline GeluParts<V> gelu_parts(F<V> z) {
  constexpr float kHalfOverSqrt2 = 0.35355339059327376f;
  constexpr float kP[] = {3.55735980e-02f,  -1.89884156e-01f, 3.78427833e-01f, -2.85105973e-01f,
                          -2.62403991e-02f, 3.81143093e-02f,  5.37298173e-02f, 1.85916051e-01f,
                          2.45122597e-01f,  2.82258064e-01f,  2.82088280e-01f};
  const F<V> az = abs<V>(z);
  const F<V> t = 1.0f / (1.0f + az * kHalfOverSqrt2);
  F<V> p = splat<V>(kP[0]);
  for (int i = 1; i < 11; ++i) p = p * t + kP[i];
  // Past |z| = 20 the Gaussian is 0 in float; the clamp keeps z^2 finite.
  const F<V> c = select<V>(az > splat<V>(20.0f), splat<V>(20.0f), az);
  const F<V> c_hi = (F<V>)((I<V>)c & (int32_t)0xfffff000);
  const F<V> c_lo = c - c_hi;
  const F<V> sq = c * c;
  const F<V> sq_lo = ((c_hi * c_hi - sq) + 2.0f * c_hi * c_lo) + c_lo * c_lo;
  return GeluParts<V>{exp<V>(-0.5f * sq), 1.0f - 0.5f * sq_lo, t * p};
}

// 0.5 z erfc(-z / sqrt 2): 0.5 z erfc(a) for z < 0, z (1 - 0.5 erfc(a)) otherwise.
template <class V>
inline F<V> gelu(F<V> z) {
  const GeluParts<V> e = gelu_parts<V>(z);
  const F<V> negative = e.gauss * (e.corr * (0.5f * z * e.tp));
  const F<V> positive = z * (1.0f - 0.5f * (e.gauss * (e.corr * e.tp)));
  return select<V>(z < splat<V>(0.0f), negative, positive);
}

// 0.5 erfc(-z / sqrt 2) + z phi(z), phi(z) = exp(-z^2 / 2) / sqrt(2 pi).
template <class V>
inline F<V> gelu_derivative(F<V> z) {
  constexpr float kInvSqrt2Pi = 0.39894228040143267794f;
  const GeluParts<V> e = gelu_parts<V>(z);
  const I<V> negative = z < splat<V>(0.0f);
  const F<V> half_erfcx = select<V>(negative, 0.5f * e.tp, -0.5f * e.tp);
  const F<V> d = e.gauss * (e.corr * (z * kInvSqrt2Pi + half_erfcx));
  return select<V>(negative, d, 1.0f + d);
}

// gelu_tanh: 0.5 z (1 + tanh(u)) = z sigmoid(2u), which keeps relative accuracy for
// negative z (1 + tanh(u) cancels there); the derivative likewise from s = sigmoid(2u)
// and 1 - s: s + 2 z s (1 - s) du/dz. 2u = z (2c + 2ck z^2) goes to exp in double:
// rounded to float it would cost |2u| 2^-24 relative error (1e-5 at z = -9.5).
template <class V>
inline F<V> gelu_tanh_exp(F<V> z) {
  const double kTwoC = 2 * act_constants::kSqrt2OverPi;
  const double kTwoCK = 2 * act_constants::kSqrt2OverPi * act_constants::kGeluTanhCoeff;
  // |z| = 12 makes |2u| = 167: exp is 0 already, and the argument within exp_wide's range.
  const F<V> az = abs<V>(z);
  const D<V> zd = __builtin_convertvector(select<V>(az > splat<V>(12.0f), splat<V>(12.0f), az), D<V>);
  return exp_wide<V>(-(zd * (kTwoC + kTwoCK * (zd * zd))));  // exp(-|2u|)
}

template <class V>
inline F<V> gelu_tanh(F<V> z) {
  return z * sigmoid<V>(gelu_tanh_exp<V>(z), z >= splat<V>(0.0f));
}

template <class V>
inline F<V> gelu_tanh_derivative(F<V> z) {
  constexpr float kC = float(act_constants::kSqrt2OverPi);
  constexpr float kC3K = float(act_constants::kSqrt2OverPi * 3 * act_constants::kGeluTanhCoeff);
  F<V> s, sc;
  sigmoid_pair<V>(gelu_tanh_exp<V>(z), z >= splat<V>(0.0f), &s, &sc);
  // s (1 - s) is 0 long before |z| = 1e4; the clamp keeps du finite (0 * inf is NaN).
  const F<V> c = select<V>(abs<V>(z) > splat<V>(1e4f), splat<V>(1e4f), z);
  const F<V> du = kC + kC3K * (c * c);
  return s + 2.0f * (z * (s * sc)) * du;
}

template <class V, Activation K>
inline F<V> forward(F<V> z, float slope) {
  using namespace act_constants;
  const F<V> zero = splat<V>(0.0f);
  if constexpr (K == Activation::kLinear) return z;
  if constexpr (K == Activation::kRelu) return max0<V>(z);
  if constexpr (K == Activation::kRelu6) {
    return select<V>(z > zero, select<V>(z < splat<V>(6.0f), z, splat<V>(6.0f)), zero);
  }
  if constexpr (K == Activation::kLeakyRelu) return select<V>(z > zero, z, slope * z);
  if constexpr (K == Activation::kElu) return select<V>(z > zero, z, expm1<V>(z));
  if constexpr (K == Activation::kSelu) {
    return float(kSeluScale) * select<V>(z > zero, z, float(kSeluAlpha) * expm1<V>(z));
  }
  if constexpr (K == Activation::kGelu) return gelu<V>(z);
  if constexpr (K == Activation::kGeluTanh) return gelu_tanh<V>(z);
  if constexpr (K == Activation::kSigmoid) return sigmoid<V>(z);
  if constexpr (K == Activation::kTanh) return tanh<V>(z);
  if constexpr (K == Activation::kSilu) return z * sigmoid<V>(z);
  if constexpr (K == Activation::kSoftplus) return log1p_unit<V>(exp<V>(-abs<V>(z))) + max0<V>(z);
}

template <class V, Activation K>
inline F<V> derivative(F<V> y, F<V> z, float slope) {
  using namespace act_constants;
  const F<V> zero = splat<V>(0.0f), one = splat<V>(1.0f);
  if constexpr (K == Activation::kLinear) return one;
  if constexpr (K == Activation::kRelu) return select<V>(y > zero, one, zero);
  if constexpr (K == Activation::kRelu6) {
    return select<V>(y > zero, select<V>(y < splat<V>(6.0f), one, zero), zero);
  }
  if constexpr (K == Activation::kLeakyRelu) {
    // With a negative slope y no longer tells z's sign (grad_needs_preactivation).
    return select<V>((slope < 0.0f ? z : y) > zero, one, splat<V>(slope));
  }
  if constexpr (K == Activation::kElu) return select<V>(y > zero, one, y + 1.0f);
  if constexpr (K == Activation::kSelu) {
    return select<V>(y < zero, y + float(kSeluScale * kSeluAlpha), splat<V>(float(kSeluScale)));
  }
  if constexpr (K == Activation::kGelu) return gelu_derivative<V>(z);
  if constexpr (K == Activation::kGeluTanh) return gelu_tanh_derivative<V>(z);
  if constexpr (K == Activation::kSigmoid) return y * (1.0f - y);
  if constexpr (K == Activation::kTanh) return 1.0f - y * y;
  if constexpr (K == Activation::kSilu) {
    F<V> s, sc;
    sigmoid_pair<V>(exp<V>(-abs<V>(z)), z >= zero, &s, &sc);
    return s * (1.0f + z * sc);
  }
  if constexpr (K == Activation::kSoftplus) return sigmoid<V>(z);
}

// x[j] = act(x[j]); the last partial vector goes through a zero-padded copy.
template <class V, Activation K>
void forward_run(float slope, float* x, int64_t n) {
  constexpr int L = Vec<V>::kLanes;
  int64_t j = 0;
  for (; j + L <= n; j += L) store<V>(x + j, forward<V, K>(load<V>(x + j), slope));
  if (j < n) {
    float buf[L] = {};
    std::memcpy(buf, x + j, (n - j) * sizeof(float));
    store<V>(buf, forward<V, K>(load<V>(buf), slope));
    std::memcpy(x + j, buf, (n - j) * sizeof(float));
  }
}

// The forward epilogue over a tile of rows: z = tile + bias (bias null: none), z_out
// = z when set, out = act(z); `out` may be `tile`. One call per output tile, so the
// activation's switch and the call cost are paid per tile instead of per row.
template <class V, Activation K>
void bias_forward_rows_run(float slope, const float* tile, int64_t ld_tile, int64_t rows,
                           int64_t cols, const float* bias, float* out, int64_t ld_out,
                           float* z_out) {
  constexpr int L = Vec<V>::kLanes;
  const int64_t full = cols / L * L;
  float bias_tail[L] = {};
  if (bias && full < cols) std::memcpy(bias_tail, bias + full, (cols - full) * sizeof(float));
  // Whole vectors of every row, then the rows' tails: with the tail inside the row loop,
  // GCC loaded the activation's constants again for each row, and a conv tile's row is
  // often two vectors (Conv2D 64x64x3->32 elu, one thread: the epilogue 0.26 -> 0.20 ms).
  if (full > 0) {
    for (int64_t i = 0; i < rows; ++i) {
      const float* t = tile + i * ld_tile;
      float* o = out + i * ld_out;
      float* zo = z_out ? z_out + i * ld_out : nullptr;
      for (int64_t j = 0; j < full; j += L) {
        F<V> z = load<V>(t + j);
        if (bias) z += load<V>(bias + j);
        if (zo) store<V>(zo + j, z);
        store<V>(o + j, forward<V, K>(z, slope));
      }
    }
  }
  if (full < cols) {
    const size_t bytes = (cols - full) * sizeof(float);
    for (int64_t i = 0; i < rows; ++i) {
      float buf[L] = {};
      std::memcpy(buf, tile + i * ld_tile + full, bytes);
      const F<V> z = load<V>(buf) + load<V>(bias_tail);
      if (z_out) {
        store<V>(buf, z);
        std::memcpy(z_out + i * ld_out + full, buf, bytes);
      }
      store<V>(buf, forward<V, K>(z, slope));
      std::memcpy(out + i * ld_out + full, buf, bytes);
    }
  }
}

// dz[j] *= act'(y[j], z[j]); z read as zeros when null (the derivative then reads y only).
template <class V, Activation K>
void derivative_run(float slope, const float* y, const float* z, float* dz, int64_t n) {
  constexpr int L = Vec<V>::kLanes;
  const F<V> zero = splat<V>(0.0f);
  int64_t j = 0;
  for (; j + L <= n; j += L) {
    const F<V> zj = z ? load<V>(z + j) : zero;
    store<V>(dz + j, load<V>(dz + j) * derivative<V, K>(load<V>(y + j), zj, slope));
  }
  if (j < n) {
    float yb[L] = {}, zb[L] = {}, db[L] = {};
    const size_t bytes = (n - j) * sizeof(float);
    std::memcpy(yb, y + j, bytes);
    if (z) std::memcpy(zb, z + j, bytes);
    std::memcpy(db, dz + j, bytes);
    store<V>(db, load<V>(db) * derivative<V, K>(load<V>(yb), load<V>(zb), slope));
    std::memcpy(dz + j, db, bytes);
  }
}

// The activation's switch, once per call, picking the loop compiled for that kind.
template <class V>
void forward_array(ActivationSpec a, float* x, int64_t n) {
  switch (a.kind) {
#define FL_ACTIVATION_CASE(K) \
  case K: return forward_run<V, K>(a.slope, x, n);
    FL_ACTIVATION_CASE(Activation::kRelu)
    FL_ACTIVATION_CASE(Activation::kRelu6)
    FL_ACTIVATION_CASE(Activation::kLeakyRelu)
    FL_ACTIVATION_CASE(Activation::kElu)
    FL_ACTIVATION_CASE(Activation::kSelu)
    FL_ACTIVATION_CASE(Activation::kGelu)
    FL_ACTIVATION_CASE(Activation::kGeluTanh)
    FL_ACTIVATION_CASE(Activation::kSigmoid)
    FL_ACTIVATION_CASE(Activation::kTanh)
    FL_ACTIVATION_CASE(Activation::kSilu)
    FL_ACTIVATION_CASE(Activation::kSoftplus)
#undef FL_ACTIVATION_CASE
    default: return;  // linear
  }
}

template <class V>
void bias_forward_rows(ActivationSpec a, const float* tile, int64_t ld_tile, int64_t rows,
                       int64_t cols, const float* bias, float* out, int64_t ld_out, float* z_out) {
  with_activation_kind(a.kind, [&](auto kind) {
    bias_forward_rows_run<V, decltype(kind)::value>(a.slope, tile, ld_tile, rows, cols, bias, out,
                                                    ld_out, z_out);
  });
}

template <class V>
void derivative_array(ActivationSpec a, const float* y, const float* z, float* dz, int64_t n) {
  switch (a.kind) {
#define FL_ACTIVATION_CASE(K) \
  case K: return derivative_run<V, K>(a.slope, y, z, dz, n);
    FL_ACTIVATION_CASE(Activation::kRelu)
    FL_ACTIVATION_CASE(Activation::kRelu6)
    FL_ACTIVATION_CASE(Activation::kLeakyRelu)
    FL_ACTIVATION_CASE(Activation::kElu)
    FL_ACTIVATION_CASE(Activation::kSelu)
    FL_ACTIVATION_CASE(Activation::kGelu)
    FL_ACTIVATION_CASE(Activation::kGeluTanh)
    FL_ACTIVATION_CASE(Activation::kSigmoid)
    FL_ACTIVATION_CASE(Activation::kTanh)
    FL_ACTIVATION_CASE(Activation::kSilu)
    FL_ACTIVATION_CASE(Activation::kSoftplus)
#undef FL_ACTIVATION_CASE
    default: return;  // linear: dz * 1
  }
}

template <class V>
constexpr ActivationKernels make_activation_kernels(const char* isa) {
  return ActivationKernels{isa, &forward_array<V>, &derivative_array<V>, &bias_forward_rows<V>};
}

}  // namespace act_generic
}  // namespace fusedlayers
