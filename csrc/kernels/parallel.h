// The one threading interface the kernels see: run N independent tasks. The TF glue
// backs it with the op's intra-op pool, the pybind11 harness with std::thread.
#pragma once

#include <cstdint>
#include <functional>

namespace fusedlayers {

class TaskRunner {
 public:
  virtual ~TaskRunner() = default;
  // How many tasks can run at once; kernels size their partitions from it.
  virtual int num_threads() const = 0;
  // Runs task(i) for every i in [0, num_tasks) and returns when all are done. Tasks
  // must write disjoint memory: results then never depend on which thread ran what,
  // which is what keeps every kernel deterministic across thread counts.
  virtual void run(int64_t num_tasks, const std::function<void(int64_t)>& task) = 0;
};

// runner.run, or the one task on the calling thread: handing a single task to the pool
// only adds the wake-up.
template <typename F>
void run_tasks(TaskRunner& runner, int64_t num_tasks, const F& task) {
  if (num_tasks == 1) {
    task(0);
  } else {
    runner.run(num_tasks, task);
  }
}

// Runs every task on the calling thread.
class SerialRunner final : public TaskRunner {
 public:
  int num_threads() const override { return 1; }
  void run(int64_t num_tasks, const std::function<void(int64_t)>& task) override {
    for (int64_t i = 0; i < num_tasks; ++i) task(i);
  }
};

}  // namespace fusedlayers
