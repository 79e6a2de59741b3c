// Shared pieces of the _native module's bindings: a std::thread TaskRunner, numpy
// array aliases, and argument checks that raise ValueError.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "csrc/kernels/activation.h"
#include "csrc/kernels/parallel.h"

namespace fusedlayers {

namespace py = pybind11;

// Runs tasks on `threads` std::threads pulling from a shared counter.
class ThreadRunner final : public TaskRunner {
 public:
  explicit ThreadRunner(int threads) : threads_(threads < 1 ? 1 : threads) {}
  int num_threads() const override { return threads_; }
  void run(int64_t num_tasks, const std::function<void(int64_t)>& task) override {
    std::atomic<int64_t> next{0};
    auto worker = [&] {
      for (int64_t i = next++; i < num_tasks; i = next++) task(i);
    };
    std::vector<std::thread> pool;
    for (int t = 1; t < threads_ && t < num_tasks; ++t) pool.emplace_back(worker);
    worker();
    for (auto& t : pool) t.join();
  }

 private:
  int threads_;
};

template <typename T>
using Array = py::array_t<T, py::array::c_style | py::array::forcecast>;

inline ActivationSpec parse_activation(const std::string& name, float slope) {
  ActivationSpec spec;
  spec.slope = slope;
  if (!activation_from_name(name, &spec.kind)) {
    throw py::value_error("activation must be one of {" + activation_name_list() + "}, got '" +
                          name + "'");
  }
  return spec;
}

inline void require(bool ok, const std::string& message) {
  if (!ok) throw py::value_error(message);
}

// Each area of kernels registers its entry points from its own file.
void register_dense_bindings(py::module_& m);
void register_gemm_bindings(py::module_& m);
void register_conv_bindings(py::module_& m);
void register_activation_bindings(py::module_& m);

}  // namespace fusedlayers
