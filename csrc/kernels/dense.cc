// Fused dense on the GEMM engine: the forward is one GEMM with the bias + activation
// epilogue; the backward is two GEMMs whose packing applies act' to dy, the second
// one carrying an extra row of ones so that db comes out with dW.
#include "dense.h"

#include <algorithm>
#include <type_traits>
#include <vector>

#include "column_sums.h"
#include "dtype.h"
#include "gemm_kernels.h"
#include "gemm_operands.h"

namespace fusedlayers {

// Cuts m rows into at most kMaxBlocks blocks of about kBlockElements elements or more,
// by the shape alone: tasks over blocks then give the same result on any thread count.
// No blocks when there is no element (m may then be huge: a conv's positions x 0 channels).
struct RowBlocks {
  static constexpr int64_t kBlockElements = int64_t{1} << 16;
  static constexpr int64_t kMaxBlocks = 64;
  int64_t count = 0, rows = 0;  // blocks, rows per block
  RowBlocks(int64_t m, int64_t n)
      : count(m == 0 || n == 0 ? 0
                               : std::clamp<int64_t>(m * n / kBlockElements, 1, kMaxBlocks)),
        rows(count == 0 ? 0 : (m + count - 1) / count) {}
};

// db[j] = sum over the m rows of dz = dy * act'(y, z), in the accumulation type. dz is
// formed a chunk of whole rows at a time (or of one row's columns, for a wide one) and
// folded pairwise into a chunk sum; each block of rows adds its chunk sums in order,
// and the blocks' sums are added in block order.
template <typename T>
void sum_activation_grad_rows(const ActivationGradPrologue<T>& pro, const T* dy, int64_t m,
                              int64_t n, T* db, TaskRunner& runner) {
  using Acc = acc_t<T>;
  constexpr int64_t kChunk = 1024;
  const RowBlocks blocks(m, n);
  const int64_t width = std::min(n, kChunk), chunk_rows = kChunk / std::max<int64_t>(width, 1);
  const bool use_z = grad_needs_preactivation(pro.act);
  std::vector<Acc> block_sums(blocks.count * n, Acc(0));
  runner.run(blocks.count, [&](int64_t block) {
    Acc* block_sum = block_sums.data() + block * n;
    const int64_t row_end = std::min(m, (block + 1) * blocks.rows);
    Acc dz[kChunk], y[kChunk], z[kChunk];
    for (int64_t row = block * blocks.rows; row < row_end; row += chunk_rows) {
      const int64_t rows = std::min(chunk_rows, row_end - row);
      for (int64_t col = 0; col < n; col += width) {
        const int64_t cols = std::min(width, n - col);
        const int64_t first = row * n + col, count = rows * cols;  // contiguous
        for (int64_t e = 0; e < count; ++e) dz[e] = load_as<Acc>(dy[first + e]);
        for (int64_t e = 0; e < count; ++e) y[e] = load_as<Acc>(pro.y[first + e]);
        if (use_z) {
          for (int64_t e = 0; e < count; ++e) z[e] = load_as<Acc>(pro.z[first + e]);
        }
        activation_derivative_multiply<Acc>(pro.act, y, use_z ? z : nullptr, dz, count);
        fold_rows(dz, rows, cols);
        for (int64_t c = 0; c < cols; ++c) block_sum[col + c] += dz[c];
      }
    }
  });
  for (int64_t c = 0; c < n; ++c) {
    Acc total(0);
    for (int64_t block = 0; block < blocks.count; ++block) total += block_sums[block * n + c];
    db[c] = store_as<T>(total);
  }
}

// out[i, j] = row[j] for each of the m rows.
template <typename T>
void broadcast_row(const T* row, int64_t m, int64_t n, T* out, TaskRunner& runner) {
  const RowBlocks blocks(m, n);
  runner.run(blocks.count, [&](int64_t block) {
    const int64_t end = std::min(m, (block + 1) * blocks.rows) * n;
    int64_t j = 0;
    for (int64_t e = block * blocks.rows * n; e < end; ++e) {
      out[e] = row[j];
      if (++j == n) j = 0;
    }
  });
}

// y = act(x·W + b) with K = 0: every row is act(b) (act(0) without a bias), and the
// pre-activation b. The engine would form it a micro-tile at a time, about ten times
// slower than the store alone when N is small.
template <typename T>
void dense_forward_no_depth(const DenseForwardArgs<T>& a, TaskRunner& runner) {
  using Acc = acc_t<T>;
  const std::vector<Acc> zero(a.n, Acc(0));
  std::vector<T> y_row(a.n), z_row(a.n);
  epilogue_bias_act<T, Acc>(zero.data(), 0, 1, a.n, a.bias, 0, a.act, y_row.data(), a.n,
                            z_row.data());
  broadcast_row(y_row.data(), a.m, a.n, a.y, runner);
  if (a.z) broadcast_row(z_row.data(), a.m, a.n, a.z, runner);
}

// Elements of W per task below which the small-batch kernels stay on one thread.
constexpr int64_t kSmallBatchMinElementsPerTask = int64_t(1) << 18;

// A bfloat16 layer with a batch of at most kMaxStripRows: W read once, in place, by strips
// of its columns (MicroKernel::strip_bf16_by_rows) rather than packed into pairs each call, which costs more
// than the product at such batches. Each output element is summed by one strip, so the
// result does not depend on how strips are split across threads. In tf.function, two
// threads, relu, packed -> strips: 1 x 1024 -> 1024 0.47 -> 0.34 ms, 1 x 4096 -> 4096
// 3.36 -> 1.2 ms (1.4-1.6 without prefetching W's rows; Xeon), 2 x 1024 -> 1024 0.51 ->
// 0.37 ms, 3 x 4096 -> 4096 3.2 -> 2.5 ms, 4 x 1024 -> 1024 0.46 both; 8 rows lose
// (8 x 1024 -> 1024 0.47 -> 0.70 ms; on Zen 4 with strips of 4 depth steps a pass,
// 8 x 4096 -> 4096 3.5-4.1 -> 4.4-5.7 ms): a strip loads and stores every row's sums
// each pass, which 8 rows of register tiles do not.
void dense_forward_bf16_strips(const DenseForwardArgs<bfloat16_t>& a, TaskRunner& runner) {
  constexpr int kXSlot = 13, kStripSlot = 14;  // see packing_scratch
  const MicroKernel<float>& mk = micro_kernel<float>();
  // x widened, as the strip reads A: row r of depth step p at p * mr + r.
  float* x = packing_scratch<float, kXSlot>(a.k * mk.mr);
  for (int64_t r = 0; r < a.m; ++r)
    for (int64_t p = 0; p < a.k; ++p) x[p * mk.mr + r] = load_as<float>(a.x[r * a.k + p]);
  const Bf16StripFn kernel = mk.strip_bf16_by_rows[a.m];
  const int64_t tasks = std::clamp<int64_t>(a.k * a.n / kSmallBatchMinElementsPerTask, 1,
                                            runner.num_threads());
  // Strips a multiple of 16 columns wide, their m x width sums within the strip's buffer,
  // enough of them for the tasks.
  const int64_t width = std::min(std::max<int64_t>(mk.strip_elements / a.m / 16 * 16, 16),
                                 (a.n + 16 * tasks - 1) / (16 * tasks) * 16);
  const int64_t strips = (a.n + width - 1) / width;
  const int64_t strips_per_task = (strips + tasks - 1) / tasks;
  const auto task = [&](int64_t t) {
    float* sums = packing_scratch<float, kStripSlot>(a.m * width);
    for (int64_t s = t * strips_per_task; s < std::min(strips, (t + 1) * strips_per_task); ++s) {
      const int64_t j0 = s * width, cols = std::min(width, a.n - j0);
      kernel(a.k, x, mk.mr, a.w + j0, a.n, sums, cols, static_cast<int>(cols), false);
      epilogue_bias_act<bfloat16_t, float>(sums, cols, a.m, cols, a.bias, j0, a.act, a.y + j0, a.n,
                                           a.z ? a.z + j0 : nullptr);
    }
  };
  run_tasks(runner, tasks, task);
}

template <typename T>
void dense_forward(const DenseForwardArgs<T>& a, TaskRunner& runner) {
  using Acc = acc_t<T>;
  if (a.k == 0) return dense_forward_no_depth(a, runner);
  if constexpr (std::is_same_v<T, bfloat16_t>) {
    if (a.m >= 1 && a.m <= kMaxStripRows && a.n > 0) return dense_forward_bf16_strips(a, runner);
  }
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
  with_packed_type<T>(a.m, [&](auto packed) {
    using In = typename decltype(packed)::type;
    const auto x_src = strided_source<T, In>(a.x, a.m, a.k, a.k, 1);
    const auto wt_src = strided_source<T, In>(a.w, a.n, a.k, 1, a.n);  // Wᵀ: n x k
    gemm<In>(x_src, wt_src, epilogue, runner, in_y);
  });
}

// Each of the backward's two products needs at least this many flops to run beside the
// other rather than after it (dense_backward_as): below, waking the second thread costs
// more than it saves. fwd+bwd in tf.function, two threads, one after the other -> side
// by side (medians of 301, two runs): 128 x 256 -> 256 (17 Mflop a product) 0.91 -> 0.81
// and 0.78 -> 0.71 ms, 32 x 784 -> 256 (13 Mflop) 0.63 -> 0.59 and 0.64 -> 0.68 ms;
// 256 x 100 -> 100 (5 Mflop) 0.40 -> 0.43 ms, 32 x 100 -> 100 0.28 -> 0.31-0.33 ms.
constexpr int64_t kMinSideBySideFlops = int64_t(1) << 23;

// Whether dense_backward_as runs dx and [dW; db] side by side, one per thread: each
// product big enough to pay for a thread (kMinSideBySideFlops) and small enough that gemm
// would not split it across threads itself (gemm_fits_one_task).
template <typename T>
bool backward_products_side_by_side(const DenseBackwardArgs<T>& a, const TaskRunner& runner) {
  const int64_t flops = 2 * a.m * a.k * a.n;  // each product's
  return runner.num_threads() > 1 && flops >= kMinSideBySideFlops &&
         gemm_fits_one_task(a.m, a.k, a.n) && gemm_fits_one_task(a.k + 1, a.n, a.m);
}

// dense_backward with operands packed as In. dx and [dW; db] are independent products:
// run side by side where backward_products_side_by_side says so, each on its own thread
// (results do not depend on where a product runs).
template <typename T, typename In>
void dense_backward_as(const DenseBackwardArgs<T>& a, TaskRunner& runner) {
  using Acc = acc_t<T>;
  const ActivationGradPrologue<T> prologue{a.y, a.z, a.act};
  // dx [m, k] = dz [m, n] · Wᵀ; B seen as n-depth rows of W.
  const auto input_grad = [&](TaskRunner& runner) {
    const auto dz_rows = strided_source<T, In>(a.dy, a.m, a.n, a.n, 1, &prologue);
    const auto w_rows = strided_source<T, In>(a.w, a.k, a.n, a.n, 1);
    gemm<In>(dz_rows, w_rows, store_into<T, Acc>(a.dx, a.k), runner,
             output_accumulator(a.dx, a.k));
  };
  // [dW; db] [k + 1, n] = [xᵀ; 1ᵀ] [k + 1, m] · dz [m, n]: the bias gradient from a row of
  // ones, at the price of a copy out of the engine's scratch (dW and db are separate
  // tensors). db is summed on its own instead when that GEMM would be a row of ones
  // alone (K = 0: a 1 x n product as deep as the batch, which the engine computes in
  // one task), and when dW is stored in the accumulation type and the batch is shorter
  // than K: dW is then summed in place, and summing dz's m rows costs less than copying
  // dW's k.
  const auto weight_grads = [&](TaskRunner& runner) {
    const bool with_bias = a.db != nullptr;
    const auto dzt_rows = strided_source<T, In>(a.dy, a.n, a.m, 1, a.n, &prologue);
    const auto xt_rows = [&](bool ones_row) {
      return strided_source<T, In>(a.x, a.k, a.m, 1, a.k, nullptr, ones_row);
    };
    bool separate_bias = a.k == 0;
    if constexpr (std::is_same_v<T, Acc>) separate_bias = separate_bias || a.m < a.k;
    if (separate_bias) {
      if (a.k > 0) {
        gemm<In>(xt_rows(false), dzt_rows, store_into<T, Acc>(a.dw, a.n), runner,
                 output_accumulator(a.dw, a.n));
      }
      if (with_bias) sum_activation_grad_rows(prologue, a.dy, a.m, a.n, a.db, runner);
      return;
    }
    gemm<In>(xt_rows(with_bias), dzt_rows,
             [&a](int64_t i0, int64_t mi, int64_t j0, int64_t nj, const Acc* tile, int64_t ld) {
               // dW's rows in one call; the ones row's product is db.
               const int64_t dw_rows = std::clamp<int64_t>(a.k - i0, 0, mi);
               store_rows(tile, ld, dw_rows, nj, a.dw + i0 * a.n + j0, a.n);
               if (dw_rows < mi) store_run(tile + dw_rows * ld, nj, a.db + j0);
             },
             runner);
  };
  if (backward_products_side_by_side(a, runner)) {
    runner.run(2, [&](int64_t product) {
      SerialRunner serial;
      if (product == 0) {
        input_grad(serial);
      } else {
        weight_grads(serial);
      }
    });
    return;
  }
  input_grad(runner);
  weight_grads(runner);
}

// dW of at least this many bytes is streamed past the caches (OuterWrite::kStream). In
// tf.function, two threads, batch 1 and 4: 4096 x 4096 (64 MiB) 4.5 -> 3.6-4.1 ms and
// 6.5 -> 5.2-5.7 ms; 2048 x 2048 (16 MiB) 1.0-1.1 -> 1.2 ms; 1024 x 1024 0.6 -> 0.8 ms.
constexpr int64_t kStreamedDwMinBytes = int64_t(32) << 20;

// Whether the backward runs in one pass over W (dense_backward_one_pass): float, double
// and bfloat16 (summed in float), a batch of at most kMaxDotOuterRows, elements in W and
// dz. Beyond 8 rows, two GEMMs win: taking dz 8 rows at a time, batch 16-64 ran 10-50%
// slower (512 x 512, 784 x 256, 4096 x 4096, in tf.function).
template <typename T>
constexpr bool has_one_pass_backward = std::is_same_v<T, acc_t<T>> || std::is_same_v<T, bfloat16_t>;

template <typename T>
bool backward_in_one_pass(const DenseBackwardArgs<T>& a) {
  return has_one_pass_backward<T> && a.m >= 1 && a.m <= kMaxDotOuterRows && a.k > 0 && a.n > 0;
}

// The one-pass kernel for T's storage and a batch of m rows.
template <typename T>
DotOuterRowsFn<acc_t<T>, T> one_pass_kernel(int64_t m) {
  if constexpr (std::is_same_v<T, bfloat16_t>) {
    return micro_kernel<float>().dot_outer_bf16_by_rows[m];
  } else {
    return micro_kernel<T>().dot_outer_by_rows[m];
  }
}

// dz = dy * act'(y, z) in the accumulation type, m x n, into per-thread scratch.
template <typename T>
const acc_t<T>* activation_grad_rows(const DenseBackwardArgs<T>& a) {
  using Acc = acc_t<T>;
  // Scratch slots, see packing_scratch.
  constexpr int kDzSlot = 10, kYSlot = 11, kZSlot = 12;
  const int64_t count = a.m * a.n;
  Acc* dz = packing_scratch<Acc, kDzSlot>(count);
  for (int64_t e = 0; e < count; ++e) dz[e] = load_as<Acc>(a.dy[e]);
  if (a.act.kind == Activation::kLinear) return dz;
  const bool use_z = grad_needs_preactivation(a.act);
  if constexpr (std::is_same_v<T, Acc>) {
    activation_derivative_multiply<Acc>(a.act, a.y, use_z ? a.z : nullptr, dz, count);
  } else {
    Acc* y = packing_scratch<Acc, kYSlot>(count);
    Acc* z = use_z ? packing_scratch<Acc, kZSlot>(count) : nullptr;
    for (int64_t e = 0; e < count; ++e) y[e] = load_as<Acc>(a.y[e]);
    for (int64_t e = 0; z && e < count; ++e) z[e] = load_as<Acc>(a.z[e]);
    activation_derivative_multiply<Acc>(a.act, y, z, dz, count);
  }
  return dz;
}

// dx and dW in one pass over W's rows (a batch of a few rows: see DotOuterRowsFn), split
// across threads by W's rows (each dx element and dW row computed by one task: the same
// bits on any thread count). dz is formed once (m x n, in the accumulation type), and db
// summed from it in batch order.
template <typename T>
void dense_backward_one_pass(const DenseBackwardArgs<T>& a, TaskRunner& runner) {
  using Acc = acc_t<T>;
  const Acc* dz = activation_grad_rows(a);
  if (a.db) {
    for (int64_t j = 0; j < a.n; ++j) {
      Acc sum = dz[j];
      for (int64_t b = 1; b < a.m; ++b) sum += dz[b * a.n + j];
      a.db[j] = store_as<T>(sum);
    }
  }
  const DotOuterRowsFn<Acc, T> kernel = one_pass_kernel<T>(a.m);
  const OuterWrite write = a.k * a.n * int64_t(sizeof(T)) >= kStreamedDwMinBytes
                               ? OuterWrite::kStream
                               : OuterWrite::kStore;
  const int64_t tasks = std::clamp<int64_t>(a.k * a.n / kSmallBatchMinElementsPerTask, 1,
                                            runner.num_threads());
  const int64_t rows_per_task = (a.k + tasks - 1) / tasks;
  const auto task = [&](int64_t t) {
    const int64_t r0 = t * rows_per_task, rows = std::min(a.k, r0 + rows_per_task) - r0;
    if (rows <= 0) return;
    kernel(rows, a.n, a.w + r0 * a.n, a.n, dz, a.x + r0, a.k, a.dx + r0, a.k,
           a.dw + r0 * a.n, a.n, write);
  };
  run_tasks(runner, tasks, task);
}

template <typename T>
void dense_backward(const DenseBackwardArgs<T>& a, TaskRunner& runner) {
  if constexpr (has_one_pass_backward<T>) {
    if (backward_in_one_pass(a)) return dense_backward_one_pass(a, runner);
  }
  with_packed_type<T>(a.m, [&](auto packed) {
    dense_backward_as<T, typename decltype(packed)::type>(a, runner);
  });
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
