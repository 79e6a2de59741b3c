// TaskRunner on the op's intra-op thread pool (the pool TF sizes for the session).
#pragma once

#define EIGEN_USE_THREADS
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
    // One task per block: the kernels already cut work into cache-sized tasks.
    pool_->ParallelFor(num_tasks, ThreadPool::SchedulingParams::Fixed(1),
                       [&task](int64_t begin, int64_t end) {
                         for (int64_t i = begin; i < end; ++i) task(i);
                       });
  }

 private:
  tensorflow::thread::ThreadPool* pool_;
};

}  // namespace fusedlayers
