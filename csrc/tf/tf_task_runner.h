// TaskRunner on the op's intra-op thread pool (the pool TF sizes for the session).
#pragma once

#define EIGEN_USE_THREADS
#include <algorithm>

#include "csrc/kernels/parallel.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/platform/blocking_counter.h"
#include "tensorflow/core/platform/threadpool.h"

namespace fusedlayers {

class TfTaskRunner final : public TaskRunner {
 public:
  explicit TfTaskRunner(tensorflow::OpKernelContext* ctx)
      : pool_(ctx->device()->tensorflow_cpu_worker_threads()->workers) {}

  int num_threads() const override { return pool_->NumThreads(); }

  void run(int64_t num_tasks, const std::function<void(int64_t)>& task) override {
    if (num_tasks <= 1) {
      if (num_tasks == 1) task(0);
      return;
    }
    using tensorflow::thread::ThreadPool;
    if (num_tasks <= num_threads() && pool_->CurrentThreadId() < 0) {
      // A task per pool thread, the caller waiting. ParallelFor would run one on the
      // calling thread (in tf.function an inter-op thread) beside the pool's threads,
      // which after another op's parallel work (stock's MatMul) still spin looking for
      // more: one thread more than cores. Dense forward in tf.function, two threads,
      // each call after stock's, caller + pool -> pool only: 32 x 1024 -> 1024 0.89 ->
      // 0.84 ms, 256 x 1024 -> 1024 4.9 -> 4.0 ms, 32 x 4096 -> 4096 10.8 -> 10.0 ms;
      // fwd+bwd 256 x 784 -> 256 3.3 -> 2.9 ms; eager and without other ops between
      // calls within ±5%. A caller that is itself a pool thread keeps ParallelFor, which
      // works inline rather than wait on threads that may all be waiting too.
      tensorflow::BlockingCounter pending(static_cast<int>(num_tasks));
      for (int64_t i = 0; i < num_tasks; ++i) {
        pool_->Schedule([&task, &pending, i] {
          task(i);
          pending.DecrementCount();
        });
      }
      pending.Wait();
      return;
    }
    // Consecutive tasks in a few blocks per thread: the pool schedules one closure per
    // block, and some kernels cut work finer than that is worth (a convolution's
    // im2col runs a task per image row). Which thread runs a task never changes its
    // result, so the blocking leaves every kernel deterministic.
    const int64_t blocks = std::min<int64_t>(num_tasks, int64_t(kBlocksPerThread) * num_threads());
    const int64_t block_size = (num_tasks + blocks - 1) / blocks;
    pool_->ParallelFor(num_tasks, ThreadPool::SchedulingParams::Fixed(block_size),
                       [&task](int64_t begin, int64_t end) {
                         for (int64_t i = begin; i < end; ++i) task(i);
                       });
  }

 private:
  // Enough blocks that a thread finishing early finds more, few enough to schedule.
  static constexpr int kBlocksPerThread = 4;
  tensorflow::thread::ThreadPool* pool_;
};

}  // namespace fusedlayers
