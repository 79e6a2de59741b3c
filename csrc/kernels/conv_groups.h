// Running a convolution's batch in groups of images (conv_lowered.cc, conv_winograd.cc):
// a whole group on one thread where there are enough groups, its phases split across
// the threads otherwise; weight gradients summed group by group in group order. Group
// boundaries come from the shape alone and a group's sums do not depend on the runner,
// so results are the same on any thread count.
#pragma once

#include <algorithm>
#include <cstdint>

#include "gemm_operands.h"
#include "parallel.h"

namespace fusedlayers {

// The per-thread scratch slot of for_each_group_summing's shares (see packing_scratch).
inline constexpr int kGroupSharesSlot = 7;

// Groups come in multiples of this many where the batch allows, so that two threads
// share them evenly: Conv2D 13x13x32->64 k4 s2 backward, batch 32: one group 1.12 ms,
// two 0.77 ms; Conv2DTranspose 5x5x128->64 k5 s2 forward in tf.function, three groups
// of 11 images against four of 8 (or 2, 8 or 16 groups, alike): 1.17-1.19x faster.
inline constexpr int64_t kGroupMultiple = 2;

// a / b rounded up, for a >= 0 and b > 0 (the convolutions' sizes and counts).
inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Images per group for a batch in groups of at most `largest` images (at least one):
// of the group counts that are multiples of kGroupMultiple, from the fewest allowed to
// twice as many, the fewest whose busiest thread has the fewest images when the groups
// are shared by that many threads (32 images at most 10 a group: 4 groups of 8 rather
// than 10, 10, 10 and 2; at most 6: 8 groups of 4, 16 images a thread, rather than 6
// groups of 6 and a last of 2, 18 on one thread: Conv2D 31x31x32->64 k4 s2 lowered
// fwd+bwd 6% slower; at most 3: 16 groups of 2 rather than 10 of 3 and a last of 2,
// the same layer's Winograd forward in tf.function 1.06-1.08x faster). From the shape
// alone, so results do not depend on the thread count.
inline int64_t images_per_group(int64_t batch, int64_t largest) {
  batch = std::max<int64_t>(batch, 1);
  const int64_t fewest =
      kGroupMultiple * ceil_div(ceil_div(batch, std::max<int64_t>(largest, 1)), kGroupMultiple);
  int64_t best_group = ceil_div(batch, std::min(batch, fewest)), best_load = -1;
  for (int64_t groups = fewest; groups <= std::min(batch, 2 * fewest); groups += kGroupMultiple) {
    const int64_t group = ceil_div(batch, groups);
    // The busiest thread's images: a whole group in each of its turns.
    const int64_t load = group * ceil_div(ceil_div(batch, group), kGroupMultiple);
    if (best_load < 0 || load < best_load) best_group = group, best_load = load;
  }
  return best_group;
}

// Whether groups run one per thread: with at least as many groups as threads. Otherwise
// the groups run one after another, each phase split across the threads.
inline bool groups_in_parallel(int64_t groups, const TaskRunner& runner) {
  return runner.num_threads() > 1 && groups >= runner.num_threads();
}

// fn(n0, images, runner) for each group of `group` images of the batch, where runner is
// the one fn's phases split across: a whole group on one thread keeps its lowering,
// product and scatter in that core's L2 with no barrier between them (two threads,
// native harness, ms: Conv2D 31x31x32->64 k4 s2 2.45 -> 1.52, 64x64x3->32 1.38 -> 0.77;
// Conv2DTranspose 16x16x128->64 k4 s2 10.6 -> 8.1).
template <typename Fn>
void for_each_group(int64_t batch, int64_t group, TaskRunner& runner, Fn&& fn) {
  auto run_group = [&](int64_t index, TaskRunner& group_runner) {
    const int64_t n0 = index * group;
    fn(n0, std::min(group, batch - n0), group_runner);
  };
  const int64_t groups = ceil_div(batch, group);
  if (groups_in_parallel(groups, runner)) {
    runner.run(groups, [&](int64_t index) {
      SerialRunner serial;
      run_group(index, serial);
    });
  } else {
    for (int64_t index = 0; index < groups; ++index) run_group(index, runner);
  }
}

// Groups per thread in a wave of for_each_group_summing. With one per thread, TensorFlow's
// pool runs one group on the calling thread while a worker with nothing to do spins
// beside it, and every wave ends on a barrier: Conv2DTranspose 16x16x128->64 k4 s2
// fwd+bwd in tf.function 31-35 ms with one, 25-27 ms with two (four: no better).
inline constexpr int64_t kWaveGroupsPerThread = 2;

// for_each_group for passes that also sum over the batch (weight gradients):
// fn(n0, images, runner, share) writes its group's share into `share` (all count
// elements: not zeroed for it, as products stored there whole need no zeros), and sum
// (count elements, written whole) = the shares added in group order, so the result is
// the same on any thread count. Groups run in waves of kWaveGroupsPerThread per thread,
// a share each; the first group's share is `sum` itself (a sum zeroed first and added
// to was 16 MiB more traffic a call for Conv2DTranspose 8x8x256->128 k4 s2's 8 MiB).
template <typename Acc, typename Fn>
void for_each_group_summing(int64_t batch, int64_t group, TaskRunner& runner, int64_t count,
                            Acc* sum, Fn&& fn) {
  const int64_t groups = ceil_div(batch, group);
  if (groups == 0) {
    std::fill(sum, sum + count, Acc(0));
    return;
  }
  const int64_t wave = groups_in_parallel(groups, runner)
                           ? std::min(groups, kWaveGroupsPerThread * runner.num_threads())
                           : 1;
  Acc* shares = packing_scratch<Acc, kGroupSharesSlot>(wave * count);
  constexpr int64_t kChunk = 4096;  // elements of sum per task of the in-order additions
  for (int64_t first = 0; first < groups; first += wave) {
    const int64_t in_wave = std::min(wave, groups - first);
    // The first slot whose share is added into sum (the first group's share is sum).
    const int64_t first_added = first == 0 ? 1 : 0;
    auto run_group = [&](int64_t slot, TaskRunner& group_runner) {
      Acc* share = first + slot == 0 ? sum : shares + slot * count;
      const int64_t n0 = (first + slot) * group;
      fn(n0, std::min(group, batch - n0), group_runner, share);
    };
    if (wave > 1) {
      runner.run(in_wave, [&](int64_t slot) {
        SerialRunner serial;
        run_group(slot, serial);
      });
    } else {
      run_group(0, runner);
    }
    if (first_added == in_wave) continue;
    runner.run(ceil_div(count, kChunk), [&](int64_t chunk) {
      const int64_t begin = chunk * kChunk, end = std::min(count, begin + kChunk);
      for (int64_t slot = first_added; slot < in_wave; ++slot) {
        const Acc* share = shares + slot * count;
        for (int64_t e = begin; e < end; ++e) sum[e] += share[e];
      }
    });
  }
}

}  // namespace fusedlayers
