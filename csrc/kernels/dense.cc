// Fused dense on the GEMM engine: the forward is one GEMM with the bias + activation
// epilogue; the backward is two GEMMs whose packing applies act' to dy, the second
// one carrying an extra row of ones so that db comes out with dW.
#include "dense.h"

#include <algorithm>
#include <type_traits>

#include "dtype.h"
#include "gemm_operands.h"

namespace fusedlayers {

// db[j] = sum over the m rows of dy * act'(y, z), rows in order (T is its own
// accumulation type here: float or double).
template <typename T>
void sum_activation_grad_rows(const ActivationGradPrologue<T>& pro, const T* dy, int64_t m,
                              int64_t n, T* db) {
  T* row = packing_scratch<T, 3>(n);
  std::fill(db, db + n, T(0));
  for (int64_t i = 0; i < m; ++i) {
    std::copy(dy + i * n, dy + (i + 1) * n, row);
    activation_derivative_multiply<T>(pro.act, pro.y + i * n, pro.z ? pro.z + i * n : nullptr, row,
                                      n);
    for (int64_t j = 0; j < n; ++j) db[j] += row[j];
  }
}

template <typename T>
void dense_forward(const DenseForwardArgs<T>& a, TaskRunner& runner) {
  using Acc = acc_t<T>;
  const auto x_src = strided_source<T, Acc>(a.x, a.m, a.k, a.k, 1);
  const auto wt_src = strided_source<T, Acc>(a.w, a.n, a.k, 1, a.n);  // Wᵀ: n x k
  const GemmAccumulator<Acc> in_y = output_accumulator(a.y, a.n);
  TileEpilogue<Acc> epilogue;
  // Summed in place in y, a linear layer without bias is already finished.
  if (!in_y.c || a.bias || a.z || a.act.kind != Activation::kLinear) {
    epilogue = [&a](int64_t i0, int64_t mi, int64_t j0, int64_t nj, const Acc* tile, int64_t ld) {
      const int64_t off = i0 * a.n + j0;
      epilogue_bias_act<T, Acc>(tile, ld, mi, nj, a.bias, j0, a.act, a.y + off, a.n,
                                a.z ? a.z + off : nullptr);
    };
  }
  gemm<Acc>(x_src, wt_src, epilogue, runner, in_y);
}

template <typename T>
void dense_backward(const DenseBackwardArgs<T>& a, TaskRunner& runner) {
  using Acc = acc_t<T>;
  const ActivationGradPrologue<T> prologue{a.y, a.z, a.act};

  // dx [m, k] = dz [m, n] · Wᵀ; B seen as n-depth rows of W.
  const auto dz_rows = strided_source<T, Acc>(a.dy, a.m, a.n, a.n, 1, &prologue);
  const auto w_rows = strided_source<T, Acc>(a.w, a.k, a.n, a.n, 1);
  gemm<Acc>(dz_rows, w_rows, store_into<T, Acc>(a.dx, a.k), runner,
            output_accumulator(a.dx, a.k));

  // [dW; db] [k + 1, n] = [xᵀ; 1ᵀ] [k + 1, m] · dz [m, n]: the bias gradient from a row of
  // ones, at the price of a copy out of the engine's scratch (dW and db are separate
  // tensors). When dW is stored in the accumulation type and the batch is shorter than
  // K, dW is summed in place and summing dz's m rows separately costs less than
  // copying dW's k.
  const bool with_bias = a.db != nullptr;
  const auto dzt_rows = strided_source<T, Acc>(a.dy, a.n, a.m, 1, a.n, &prologue);
  if constexpr (std::is_same_v<T, Acc>) {
    if (a.m < a.k) {
      gemm<Acc>(strided_source<T, Acc>(a.x, a.k, a.m, 1, a.k), dzt_rows, {}, runner,
                GemmAccumulator<Acc>{a.dw, a.n});
      if (with_bias) sum_activation_grad_rows(prologue, a.dy, a.m, a.n, a.db);
      return;
    }
  }
  const auto xt_rows = strided_source<T, Acc>(a.x, a.k, a.m, 1, a.k, nullptr, with_bias);
  gemm<Acc>(xt_rows, dzt_rows,
            [&a](int64_t i0, int64_t mi, int64_t j0, int64_t nj, const Acc* tile, int64_t ld) {
              for (int64_t i = 0; i < mi; ++i) {
                const int64_t row = i0 + i;
                T* out = row < a.k ? a.dw + row * a.n : a.db;
                for (int64_t j = 0; j < nj; ++j) out[j0 + j] = store_as<T>(tile[i * ld + j]);
              }
            },
            runner);
}

#define FUSEDLAYERS_INSTANTIATE_DENSE(T)                                      \
  template void dense_forward<T>(const DenseForwardArgs<T>&, TaskRunner&); \
  template void dense_backward<T>(const DenseBackwardArgs<T>&, TaskRunner&);
FUSEDLAYERS_INSTANTIATE_DENSE(float)
FUSEDLAYERS_INSTANTIATE_DENSE(double)
FUSEDLAYERS_INSTANTIATE_DENSE(bfloat16_t)
FUSEDLAYERS_INSTANTIATE_DENSE(float16_t)
#undef FUSEDLAYERS_INSTANTIATE_DENSE

}  // namespace fusedlayers
