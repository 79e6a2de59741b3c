// TaskRunner on the op's intra-op thread pool (the pool TF sizes for the session).
#pragma once

#define EIGEN_USE_THREADS
#include <algorithm>

#include "csrc/kernels/parallel.h"
#include "tensorflow/core/framework/op_kernel.h"
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
