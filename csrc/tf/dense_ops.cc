// TF glue for the fused dense ops: registration, shape functions, and kernels that
// validate every input before handing raw pointers to csrc/kernels/dense.
#include <string>

#include "csrc/kernels/dense.h"
#include "csrc/tf/op_utils.h"
#include "csrc/tf/tf_task_runner.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace fusedlayers {
namespace {

using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Tensor;
using tensorflow::TensorShape;
using tensorflow::shape_inference::DimensionHandle;
using tensorflow::shape_inference::InferenceContext;
using tensorflow::shape_inference::ShapeHandle;

absl::Status read_num_bias(InferenceContext* c, int* num_bias) {
  TF_RETURN_IF_ERROR(c->GetAttr("num_bias", num_bias));
  if (*num_bias > 1) {
    return absl::InvalidArgumentError("num_bias must be 0 or 1, got " + std::to_string(*num_bias));
  }
  return absl::OkStatus();
}

// Checks x [..., K], kernel [K, N] and bias [N] at graph construction; sets *y to
// x's shape with the last dimension replaced by N.
absl::Status dense_shapes(InferenceContext* c, int x_index, int num_bias, ShapeHandle* y) {
  ShapeHandle x, kernel;
  if (!c->WithRankAtLeast(c->input(x_index), 2, &x).ok()) {
    return absl::InvalidArgumentError("x must have rank >= 2 ([..., K]), got shape " +
                                      c->DebugString(c->input(x_index)));
  }
  if (!c->WithRank(c->input(x_index + 1), 2, &kernel).ok()) {
    return absl::InvalidArgumentError("kernel must have rank 2 ([K, N]), got shape " +
                                      c->DebugString(c->input(x_index + 1)));
  }
  DimensionHandle k_x = c->Dim(x, -1), k_w = c->Dim(kernel, 0), n = c->Dim(kernel, 1);
  if (c->ValueKnown(k_x) && c->ValueKnown(k_w) && c->Value(k_x) != c->Value(k_w)) {
    return absl::InvalidArgumentError(
        "kernel must have shape [K, N] with K = x's last dimension " +
        std::to_string(c->Value(k_x)) + ", got kernel shape " + c->DebugString(kernel));
  }
  if (num_bias == 1) {
    const int bias_index = x_index == 0 ? 2 : -1;
    if (bias_index >= 0) {
      ShapeHandle bias;
      if (!c->WithRank(c->input(bias_index), 1, &bias).ok()) {
        return absl::InvalidArgumentError("bias must have rank 1 ([N]), got shape " +
                                          c->DebugString(c->input(bias_index)));
      }
      DimensionHandle nb = c->Dim(bias, 0);
      if (c->ValueKnown(nb) && c->ValueKnown(n) && c->Value(nb) != c->Value(n)) {
        return absl::InvalidArgumentError("bias must have shape [N] = [" +
                                          std::to_string(c->Value(n)) + "], got " +
                                          c->DebugString(bias));
      }
    }
  }
  ShapeHandle leading;
  TF_RETURN_IF_ERROR(c->Subshape(x, 0, -1, &leading));
  TF_RETURN_IF_ERROR(c->Concatenate(leading, c->Vector(n), y));
  // A known output whose element count leaves int64 is rejected here, at trace time:
  // TensorFlow itself aborts the process on such a shape (its tape records the op's
  // static output shapes before the kernel could refuse it).
  if (c->FullyDefined(*y)) {
    int64_t elements = 1;
    for (int i = 0; i < c->Rank(*y); ++i) {
      TF_RETURN_IF_ERROR(checked_mul(elements, c->Value(c->Dim(*y, i)), "the output size", &elements));
    }
  }
  return absl::OkStatus();
}

// The shape of the pre-activation output: y's when the gradient needs it, else [0].
absl::Status preactivation_shape(InferenceContext* c, ShapeHandle y, ShapeHandle* out) {
  ActivationSpec act;
  TF_RETURN_IF_ERROR(read_activation(c, &act));
  *out = grad_needs_preactivation(act) ? y : c->Vector(0);
  return absl::OkStatus();
}

// Checks that input `index` (named `name`) is compatible with the forward output `y`.
absl::Status require_forward_output_shape(InferenceContext* c, int index, const char* name,
                                          ShapeHandle y) {
  ShapeHandle merged;
  if (!c->Merge(c->input(index), y, &merged).ok()) {
    return absl::InvalidArgumentError(std::string(name) + " must have the forward output's shape " +
                                      c->DebugString(y) + ", got " +
                                      c->DebugString(c->input(index)));
  }
  return absl::OkStatus();
}

}  // namespace

REGISTER_OP("FusedLayers>FusedDense")
    .Input("x: T")
    .Input("kernel: T")
    .Input("bias: num_bias * T")
    .Output("y: T")
    .Output("preactivation: T")
    .Attr("T: {float, double, bfloat16, half}")
    .Attr("num_bias: int >= 0 = 0")
    .FUSEDLAYERS_ACTIVATION_ATTRS
    .SetShapeFn([](InferenceContext* c) {
      int num_bias;
      TF_RETURN_IF_ERROR(read_num_bias(c, &num_bias));
      ShapeHandle y, z;
      TF_RETURN_IF_ERROR(dense_shapes(c, 0, num_bias, &y));
      TF_RETURN_IF_ERROR(preactivation_shape(c, y, &z));
      c->set_output(0, y);
      c->set_output(1, z);
      return absl::OkStatus();
    })
    .Doc(R"doc(
y = activation(x . kernel + bias), with x [..., K], kernel [K, N], bias [N] (optional).
preactivation holds x . kernel + bias when the activation's gradient needs it, else
it is empty. Bias and activation are applied to each output tile inside the GEMM.
)doc");

REGISTER_OP("FusedLayers>FusedDenseGrad")
    .Input("dy: T")
    .Input("x: T")
    .Input("kernel: T")
    .Input("y: T")
    .Input("preactivation: T")
    .Output("dx: T")
    .Output("dkernel: T")
    .Output("dbias: num_bias * T")
    .Attr("T: {float, double, bfloat16, half}")
    .Attr("num_bias: int >= 0 = 0")
    .FUSEDLAYERS_ACTIVATION_ATTRS
    .SetShapeFn([](InferenceContext* c) {
      int num_bias;
      TF_RETURN_IF_ERROR(read_num_bias(c, &num_bias));
      ShapeHandle y;
      TF_RETURN_IF_ERROR(dense_shapes(c, 1, 0, &y));
      TF_RETURN_IF_ERROR(require_forward_output_shape(c, 0, "dy", y));
      TF_RETURN_IF_ERROR(require_forward_output_shape(c, 3, "y", y));
      ActivationSpec act;
      TF_RETURN_IF_ERROR(read_activation(c, &act));
      if (grad_needs_preactivation(act)) {
        TF_RETURN_IF_ERROR(require_forward_output_shape(c, 4, "preactivation", y));
      }
      c->set_output(0, c->input(1));
      c->set_output(1, c->input(2));
      if (num_bias == 1) c->set_output(2, c->Vector(c->Dim(c->input(2), 1)));
      return absl::OkStatus();
    })
    .Doc(R"doc(
Gradient of FusedDense: dx = dz . kernel^T, dkernel = x^T . dz, dbias = sum(dz), where
dz = dy * activation'(.) is formed while packing, from y (or the preactivation).
)doc");

namespace {

// The validated geometry of a dense call: x [..., K] seen as [m, K], kernel [K, N].
struct DenseGeometry {
  int64_t m = 0, k = 0, n = 0;
  TensorShape y_shape;
};

absl::Status dense_geometry(const Tensor& x, const Tensor& kernel, DenseGeometry* g) {
  if (x.dims() < 2) {
    return absl::InvalidArgumentError("x must have rank >= 2 ([..., K]), got shape " +
                                      shape_string(x.shape()));
  }
  if (kernel.dims() != 2) {
    return absl::InvalidArgumentError("kernel must have rank 2 ([K, N]), got shape " +
                                      shape_string(kernel.shape()));
  }
  g->k = x.dim_size(x.dims() - 1);
  if (kernel.dim_size(0) != g->k) {
    return absl::InvalidArgumentError("kernel must have shape [K, N] with K = x's last dimension " +
                                      std::to_string(g->k) + ", got kernel shape " +
                                      shape_string(kernel.shape()));
  }
  g->n = kernel.dim_size(1);
  g->m = 1;
  g->y_shape = TensorShape();
  for (int d = 0; d + 1 < x.dims(); ++d) {
    TF_RETURN_IF_ERROR(checked_mul(g->m, x.dim_size(d), "x's leading dimensions", &g->m));
    TF_RETURN_IF_ERROR(g->y_shape.AddDimWithStatus(x.dim_size(d)));
  }
  int64_t y_elements;
  TF_RETURN_IF_ERROR(checked_mul(g->m, g->n, "the output size", &y_elements));
  return g->y_shape.AddDimWithStatus(g->n);
}

absl::Status check_bias(const tensorflow::OpInputList& bias, int64_t n) {
  if (bias.size() == 1 && (bias[0].dims() != 1 || bias[0].dim_size(0) != n)) {
    return absl::InvalidArgumentError("bias must have shape [N] = [" + std::to_string(n) +
                                      "], got " + shape_string(bias[0].shape()));
  }
  return absl::OkStatus();
}

class FusedOpBase : public OpKernel {
 public:
  explicit FusedOpBase(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, read_activation(ctx, &act_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("num_bias", &num_bias_));
    OP_REQUIRES(ctx, num_bias_ == 0 || num_bias_ == 1,
                absl::InvalidArgumentError("num_bias must be 0 or 1, got " +
                                           std::to_string(num_bias_)));
  }

 protected:
  ActivationSpec act_;
  int num_bias_ = 0;
};

template <typename T>
class FusedDenseOp : public FusedOpBase {
 public:
  using FusedOpBase::FusedOpBase;

  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    const Tensor& kernel = ctx->input(1);
    tensorflow::OpInputList bias;
    OP_REQUIRES_OK(ctx, ctx->input_list("bias", &bias));
    DenseGeometry g;
    OP_REQUIRES_OK(ctx, dense_geometry(x, kernel, &g));
    OP_REQUIRES_OK(ctx, check_bias(bias, g.n));

    Tensor* y = nullptr;
    Tensor* z = nullptr;
    const bool save_z = grad_needs_preactivation(act_);
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, g.y_shape, &y));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, save_z ? g.y_shape : TensorShape({0}), &z));
    if (g.m == 0 || g.n == 0) return;

    DenseForwardArgs<typename KernelType<T>::type> args;
    args.x = kernel_ptr<T>(x);
    args.w = kernel_ptr<T>(kernel);
    args.bias = bias.size() ? kernel_ptr<T>(bias[0]) : nullptr;
    args.y = kernel_ptr<T>(y);
    args.z = save_z ? kernel_ptr<T>(z) : nullptr;
    args.m = g.m;
    args.k = g.k;
    args.n = g.n;
    args.act = act_;
    TfTaskRunner runner(ctx);
    dense_forward(args, runner);
  }
};

template <typename T>
class FusedDenseGradOp : public FusedOpBase {
 public:
  using FusedOpBase::FusedOpBase;

  void Compute(OpKernelContext* ctx) override {
    const Tensor& dy = ctx->input(0);
    const Tensor& x = ctx->input(1);
    const Tensor& kernel = ctx->input(2);
    const Tensor& y = ctx->input(3);
    const Tensor& z = ctx->input(4);
    DenseGeometry g;
    OP_REQUIRES_OK(ctx, dense_geometry(x, kernel, &g));
    OP_REQUIRES(ctx, dy.shape() == g.y_shape,
                absl::InvalidArgumentError("dy must have the forward output's shape " +
                                           shape_string(g.y_shape) + ", got " +
                                           shape_string(dy.shape())));
    OP_REQUIRES(ctx, y.shape() == g.y_shape,
                absl::InvalidArgumentError("y must have the forward output's shape " +
                                           shape_string(g.y_shape) + ", got " +
                                           shape_string(y.shape())));
    const bool need_z = grad_needs_preactivation(act_);
    OP_REQUIRES(ctx, !need_z || z.shape() == g.y_shape,
                absl::InvalidArgumentError(
                    std::string("preactivation must have the forward output's shape ") +
                    shape_string(g.y_shape) + " for activation '" +
                    kActivationNames[static_cast<int>(act_.kind)] + "', got " +
                    shape_string(z.shape())));

    Tensor* dx = nullptr;
    Tensor* dw = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, x.shape(), &dx));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, kernel.shape(), &dw));
    tensorflow::OpOutputList db_list;
    OP_REQUIRES_OK(ctx, ctx->output_list("dbias", &db_list));
    Tensor* db = nullptr;
    if (num_bias_ == 1) OP_REQUIRES_OK(ctx, db_list.allocate(0, TensorShape({g.n}), &db));
    if (g.k == 0 && g.n == 0) return;

    DenseBackwardArgs<typename KernelType<T>::type> args;
    args.dy = kernel_ptr<T>(dy);
    args.x = kernel_ptr<T>(x);
    args.w = kernel_ptr<T>(kernel);
    args.y = kernel_ptr<T>(y);
    args.z = need_z ? kernel_ptr<T>(z) : nullptr;
    args.dx = kernel_ptr<T>(dx);
    args.dw = kernel_ptr<T>(dw);
    args.db = db ? kernel_ptr<T>(db) : nullptr;
    args.m = g.m;
    args.k = g.k;
    args.n = g.n;
    args.act = act_;
    TfTaskRunner runner(ctx);
    dense_backward(args, runner);
  }
};

#define FUSEDLAYERS_REGISTER_DENSE(T)                                                      \
  REGISTER_KERNEL_BUILDER(                                                               \
      Name("FusedLayers>FusedDense").Device(tensorflow::DEVICE_CPU).TypeConstraint<T>("T"), \
      FusedDenseOp<T>);                                                                  \
  REGISTER_KERNEL_BUILDER(Name("FusedLayers>FusedDenseGrad")                             \
                              .Device(tensorflow::DEVICE_CPU)                            \
                              .TypeConstraint<T>("T"),                                   \
                          FusedDenseGradOp<T>);
FUSEDLAYERS_REGISTER_DENSE(float)
FUSEDLAYERS_REGISTER_DENSE(double)
FUSEDLAYERS_REGISTER_DENSE(Eigen::bfloat16)
FUSEDLAYERS_REGISTER_DENSE(Eigen::half)
#undef FUSEDLAYERS_REGISTER_DENSE

}  // namespace
}  // namespace fusedlayers
