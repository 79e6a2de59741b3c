// What every CUDA launcher returns: ok, an invalid argument (caught before any
// memory is touched) or a CUDA error, so callers raise the right error instead of
// the launcher aborting.
#pragma once

#include <string>
#include <utility>

namespace fusedlayers::gpu {

struct Status {
  enum class Code { kOk, kInvalidArgument, kCudaError };
  Code code = Code::kOk;
  std::string message;

  bool ok() const { return code == Code::kOk; }
  static Status Ok() { return {}; }
  static Status InvalidArgument(std::string m) { return {Code::kInvalidArgument, std::move(m)}; }
  static Status CudaError(std::string m) { return {Code::kCudaError, std::move(m)}; }
};

// Returns early from the enclosing function with `expr`'s status unless it is ok.
#define FL_RETURN_IF_ERROR(expr)                    \
  do {                                              \
    ::fusedlayers::gpu::Status fl_status_ = (expr); \
    if (!fl_status_.ok()) return fl_status_;        \
  } while (0)

}  // namespace fusedlayers::gpu
