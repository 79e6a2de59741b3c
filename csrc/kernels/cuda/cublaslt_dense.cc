#include "csrc/kernels/cuda/cublaslt_dense.h"

#include <cublasLt.h>

#include <map>
#include <mutex>
#include <string>
#include <tuple>

namespace fusedlayers::gpu {
namespace {

// cuBLASLt is column-major: row-major y [m, n] = x [m, k] · kernel [k, n] is
// column-major yᵀ [n, m] = kernelᵀ [n, k] · xᵀ [k, m], with the bias along yᵀ's rows,
// which is where cuBLASLt's BIAS epilogues add it.
struct PlanKey {
  int device;
  DType dtype;
  int64_t m, k, n;
  cublasLtEpilogue_t epilogue;
  bool tf32;
  std::size_t workspace_bytes;
  bool operator<(const PlanKey& o) const {
    return std::tie(device, dtype, m, k, n, epilogue, tf32, workspace_bytes) <
           std::tie(o.device, o.dtype, o.m, o.k, o.n, o.epilogue, o.tf32, o.workspace_bytes);
  }
};

// Descriptors and the heuristic's algorithm for one shape, made once (the heuristic
// query costs more than the small GEMMs it serves).
struct Plan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo;
};

cudaDataType_t data_type_of(DType dtype) {
  switch (dtype) {
    case DType::kFloat16: return CUDA_R_16F;
    case DType::kBFloat16: return CUDA_R_16BF;
    default: return CUDA_R_32F;
  }
}

std::string error_of(const char* what, cublasStatus_t s) {
  return std::string("cuBLASLt ") + what + " failed with status " + std::to_string(static_cast<int>(s));
}

#define FL_CUBLAS_CHECK(what, expr)                                                      \
  do {                                                                                   \
    const cublasStatus_t fl_s_ = (expr);                                                 \
    if (fl_s_ != CUBLAS_STATUS_SUCCESS) return Status::CudaError(error_of(what, fl_s_)); \
  } while (0)

// One handle per device and the plans, guarded by one mutex (plans are created once
// per shape; the matmul itself runs outside the lock).
std::mutex g_mutex;
std::map<int, cublasLtHandle_t> g_handles;
std::map<PlanKey, Plan> g_plans;

Status make_plan(cublasLtHandle_t handle, const PlanKey& key, Plan* plan) {
  const cudaDataType_t t = data_type_of(key.dtype);
  const cublasComputeType_t compute =
      key.tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  FL_CUBLAS_CHECK("MatmulDescCreate", cublasLtMatmulDescCreate(&plan->op, compute, CUDA_R_32F));
  FL_CUBLAS_CHECK("set epilogue",
                  cublasLtMatmulDescSetAttribute(plan->op, CUBLASLT_MATMUL_DESC_EPILOGUE,
                                                 &key.epilogue, sizeof key.epilogue));
  FL_CUBLAS_CHECK("layout A", cublasLtMatrixLayoutCreate(&plan->a, t, key.n, key.k, key.n));
  FL_CUBLAS_CHECK("layout B", cublasLtMatrixLayoutCreate(&plan->b, t, key.k, key.m, key.k));
  FL_CUBLAS_CHECK("layout D", cublasLtMatrixLayoutCreate(&plan->d, t, key.n, key.m, key.n));
  cublasLtMatmulPreference_t preference;
  FL_CUBLAS_CHECK("PreferenceCreate", cublasLtMatmulPreferenceCreate(&preference));
  const std::size_t workspace = key.workspace_bytes;
  cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                       &workspace, sizeof workspace);
  cublasLtMatmulHeuristicResult_t result;
  int found = 0;
  const cublasStatus_t s = cublasLtMatmulAlgoGetHeuristic(
      handle, plan->op, plan->a, plan->b, plan->d, plan->d, preference, 1, &result, &found);
  cublasLtMatmulPreferenceDestroy(preference);
  FL_CUBLAS_CHECK("AlgoGetHeuristic", s);
  if (found == 0) return Status::CudaError("cuBLASLt found no algorithm for this shape");
  plan->algo = result.algo;
  return Status::Ok();
}

// The plan for `key`, made on first use.
Status plan_for(const PlanKey& key, cublasLtHandle_t* handle, const Plan** plan) {
  std::lock_guard<std::mutex> lock(g_mutex);
  auto h = g_handles.find(key.device);
  if (h == g_handles.end()) {
    cublasLtHandle_t created;
    FL_CUBLAS_CHECK("Create", cublasLtCreate(&created));
    h = g_handles.emplace(key.device, created).first;
  }
  *handle = h->second;
  auto p = g_plans.find(key);
  if (p == g_plans.end()) {
    Plan made;
    FL_RETURN_IF_ERROR(make_plan(h->second, key, &made));
    p = g_plans.emplace(key, made).first;
  }
  *plan = &p->second;
  return Status::Ok();
}

}  // namespace

bool cublaslt_dense_forward_applies(const DenseForwardArgs& a) {
  const bool exact_activation =
      a.act.kind == Activation::kLinear || a.act.kind == Activation::kRelu;
  return exact_activation && a.z == nullptr && a.m > 0 && a.n > 0 && a.k > 0;
}

Status cublaslt_dense_forward(const DenseForwardArgs& a, cudaStream_t stream) {
  PlanKey key;
  if (cudaGetDevice(&key.device) != cudaSuccess) {
    return Status::CudaError(std::string("cudaGetDevice: ") + cudaGetErrorString(cudaGetLastError()));
  }
  const bool relu = a.act.kind == Activation::kRelu;
  key.dtype = a.dtype;
  key.m = a.m, key.k = a.k, key.n = a.n;
  key.epilogue = a.bias ? (relu ? CUBLASLT_EPILOGUE_RELU_BIAS : CUBLASLT_EPILOGUE_BIAS)
                        : (relu ? CUBLASLT_EPILOGUE_RELU : CUBLASLT_EPILOGUE_DEFAULT);
  key.tf32 = a.allow_tf32 && a.dtype == DType::kFloat32;
  key.workspace_bytes = a.workspace ? a.workspace_bytes : 0;
  cublasLtHandle_t handle;
  const Plan* plan;
  FL_RETURN_IF_ERROR(plan_for(key, &handle, &plan));
  // The bias pointer is an attribute of the descriptor every call of this shape
  // shares: set it and enqueue the matmul under the lock (enqueueing is asynchronous,
  // so the lock is held only for the launch).
  std::lock_guard<std::mutex> lock(g_mutex);
  if (a.bias) {
    FL_CUBLAS_CHECK("set bias", cublasLtMatmulDescSetAttribute(
                                    plan->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &a.bias,
                                    sizeof a.bias));
  }
  const float alpha = 1.0f, beta = 0.0f;
  FL_CUBLAS_CHECK("Matmul", cublasLtMatmul(handle, plan->op, &alpha, a.kernel, plan->a, a.x,
                                           plan->b, &beta, a.y, plan->d, a.y, plan->d,
                                           &plan->algo, a.workspace, key.workspace_bytes, stream));
  return Status::Ok();
}

}  // namespace fusedlayers::gpu
