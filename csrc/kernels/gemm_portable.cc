// Portable micro-kernels on GCC/Clang vector extensions, compiled for the baseline
// target (SSE2 on x86-64): the fallback for CPUs without AVX2 + FMA, and a reference
// path the tests force with FUSEDLAYERS_ISA=portable. Without FMA each step is a
// multiply then an add, so results differ from the FMA paths in the last bits.
#include <cstring>

#include "gemm_microkernel.h"

namespace fusedlayers {
namespace {

template <typename Scalar>
struct PortableVector {
  using T = Scalar;
  static constexpr int kLanes = 16 / sizeof(Scalar);
  typedef Scalar Reg __attribute__((vector_size(16)));
  static Reg zero() { return Reg{}; }
  static Reg load(const T* p) {
    Reg v;
    std::memcpy(&v, p, sizeof v);
    return v;
  }
  static Reg broadcast(const T* p) { return Reg{} + *p; }
  static Reg fma(Reg a, Reg b, Reg c) { return a * b + c; }
  static Reg add(Reg a, Reg b) { return a + b; }
  static void store(T* p, Reg v) { std::memcpy(p, &v, sizeof v); }
  static Reg load_first(const T* p, int n) {
    Reg v{};
    std::memcpy(&v, p, n * sizeof(T));
    return v;
  }
  static void store_first(T* p, Reg v, int n) { std::memcpy(p, &v, n * sizeof(T)); }
  static void stream(T* p, Reg v) { store(p, v); }  // plain stores: no fence needed
  static void stream_fence() {}
};

IsaKernels make_portable_kernels() {
  IsaKernels k{};
  k.isa = "portable";
  k.f32 = isa_generic::make_micro_kernel<PortableVector<float>, 4, 2>();
  k.f64 = isa_generic::make_micro_kernel<PortableVector<double>, 4, 2>();
  k.fma_chains = &isa_generic::fma_chains<PortableVector<float>>;
  return k;
}

}  // namespace

const IsaKernels& portable_kernels() {
  static const IsaKernels kernels = make_portable_kernels();
  return kernels;
}

}  // namespace fusedlayers
