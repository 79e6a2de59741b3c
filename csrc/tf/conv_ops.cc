// TF glue for the fused conv2d and conv2d_transpose ops and their gradients:
// registration, shape functions that apply the kernels' own geometry rules at trace
// time, and kernels that validate every input before touching memory.
#include <string>
#include <vector>

#include "csrc/kernels/conv.h"
#include "csrc/kernels/conv_geometry.h"
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

std::string list_string(const std::vector<int64_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

// Reads strides, dilations, padding and (for the transpose) output_padding, and
// checks them with the kernels' rules.
template <typename Context>
absl::Status read_conv_attrs(Context* ctx, bool transpose, ConvAttrs* attrs) {
  std::vector<int64_t> strides, dilations, output_padding;
  std::string padding;
  TF_RETURN_IF_ERROR(ctx->GetAttr("strides", &strides));
  TF_RETURN_IF_ERROR(ctx->GetAttr("dilations", &dilations));
  TF_RETURN_IF_ERROR(ctx->GetAttr("padding", &padding));
  if (strides.size() != 2) {
    return absl::InvalidArgumentError("strides must have 2 values (height, width), got " +
                                      list_string(strides));
  }
  if (dilations.size() != 2) {
    return absl::InvalidArgumentError("dilations must have 2 values (height, width), got " +
                                      list_string(dilations));
  }
  if (!conv_padding_from_name(padding, &attrs->padding)) {
    return absl::InvalidArgumentError("padding must be 'valid' or 'same', got '" + padding + "'");
  }
  if (transpose) {
    TF_RETURN_IF_ERROR(ctx->GetAttr("output_padding", &output_padding));
    if (!output_padding.empty() && output_padding.size() != 2) {
      return absl::InvalidArgumentError(
          "output_padding must be empty (None) or have 2 values (height, width), got " +
          list_string(output_padding));
    }
  }
  for (int i = 0; i < 2; ++i) {
    attrs->strides[i] = strides[i];
    attrs->dilations[i] = dilations[i];
  }
  attrs->has_output_padding = !output_padding.empty();
  if (attrs->has_output_padding) {
    attrs->output_padding[0] = output_padding[0];
    attrs->output_padding[1] = output_padding[1];
  }
  const std::string error = check_conv_attrs(
      attrs->strides, attrs->dilations, attrs->has_output_padding ? attrs->output_padding : nullptr);
  if (!error.empty()) return absl::InvalidArgumentError(error);
  return absl::OkStatus();
}

template <typename Context>
absl::Status read_bias_count(Context* ctx, int* num_bias) {
  TF_RETURN_IF_ERROR(ctx->GetAttr("num_bias", num_bias));
  if (*num_bias != 0 && *num_bias != 1) {
    return absl::InvalidArgumentError("num_bias must be 0 or 1, got " + std::to_string(*num_bias));
  }
  return absl::OkStatus();
}

// The shape of y from x and kernel at trace time: every known size is checked as
// the kernel will check it; unknown sizes stay unknown.
absl::Status conv_output_shape(InferenceContext* c, bool transpose, int x_index, int num_bias,
                               ShapeHandle* y) {
  ConvAttrs attrs;
  TF_RETURN_IF_ERROR(read_conv_attrs(c, transpose, &attrs));
  ShapeHandle x, kernel;
  if (!c->WithRank(c->input(x_index), 4, &x).ok()) {
    return absl::InvalidArgumentError("x must have rank 4 [batch, height, width, channels], got "
                                      "shape " + c->DebugString(c->input(x_index)));
  }
  if (!c->WithRank(c->input(x_index + 1), 4, &kernel).ok()) {
    const char* layout = transpose ? "[kh, kw, filters, in_channels]" : "[kh, kw, in_channels, filters]";
    return absl::InvalidArgumentError(std::string("kernel must have rank 4 ") + layout +
                                      ", got shape " + c->DebugString(c->input(x_index + 1)));
  }
  // Known dimensions take their value, unknown ones a placeholder that passes every
  // check (1 for sizes, the matching value for channels); the output dimension
  // derived from a placeholder is reported unknown.
  int64_t xs[4], ks[4];
  bool known_x[4], known_k[4];
  for (int i = 0; i < 4; ++i) {
    known_x[i] = c->ValueKnown(c->Dim(x, i));
    known_k[i] = c->ValueKnown(c->Dim(kernel, i));
    xs[i] = known_x[i] ? c->Value(c->Dim(x, i)) : -1;
    ks[i] = known_k[i] ? c->Value(c->Dim(kernel, i)) : -1;
  }
  const int in_ch = transpose ? 3 : 2, out_ch = transpose ? 2 : 3;
  if (!known_x[3]) xs[3] = known_k[in_ch] ? ks[in_ch] : 1;
  if (!known_k[in_ch]) ks[in_ch] = xs[3];
  if (!known_k[out_ch]) ks[out_ch] = 1;
  if (!known_x[0]) xs[0] = 1;
  for (int i = 0; i < 2; ++i) {
    if (!known_k[i]) ks[i] = 1;
    // An unknown spatial size placeholder must satisfy the valid-padding minimum.
    if (!known_x[1 + i]) xs[1 + i] = std::max<int64_t>(ks[i] * attrs.dilations[i], 1);
  }
  ConvGeometry g;
  const std::string error = transpose ? conv2d_transpose_geometry(xs, ks, attrs, &g)
                                      : conv2d_geometry(xs, ks, attrs, &g);
  if (!error.empty()) return absl::InvalidArgumentError(error);
  int64_t out[4];
  if (transpose) {
    conv2d_transpose_output_shape(g, out);
  } else {
    conv2d_output_shape(g, out);
  }
  const bool known_out[4] = {known_x[0], known_x[1] && known_k[0], known_x[2] && known_k[1],
                             known_k[out_ch]};
  std::vector<DimensionHandle> dims;
  for (int i = 0; i < 4; ++i) dims.push_back(known_out[i] ? c->MakeDim(out[i]) : c->UnknownDim());
  *y = c->MakeShape(dims);
  if (num_bias == 1 && x_index == 0) {
    ShapeHandle bias;
    if (!c->WithRank(c->input(2), 1, &bias).ok()) {
      return absl::InvalidArgumentError("bias must have rank 1 ([filters]), got shape " +
                                        c->DebugString(c->input(2)));
    }
    DimensionHandle nb = c->Dim(bias, 0);
    if (c->ValueKnown(nb) && known_k[out_ch] && c->Value(nb) != ks[out_ch]) {
      return absl::InvalidArgumentError("bias must have shape [filters] = [" +
                                        std::to_string(ks[out_ch]) + "], got " +
                                        c->DebugString(bias));
    }
  }
  return absl::OkStatus();
}

absl::Status forward_shape_fn(InferenceContext* c, bool transpose) {
  int num_bias;
  TF_RETURN_IF_ERROR(read_bias_count(c, &num_bias));
  ActivationSpec act;
  TF_RETURN_IF_ERROR(read_activation(c, &act));
  ShapeHandle y;
  TF_RETURN_IF_ERROR(conv_output_shape(c, transpose, 0, num_bias, &y));
  c->set_output(0, y);
  c->set_output(1, grad_needs_preactivation(act) ? y : c->Vector(0));
  return absl::OkStatus();
}

absl::Status grad_shape_fn(InferenceContext* c, bool transpose) {
  int num_bias;
  TF_RETURN_IF_ERROR(read_bias_count(c, &num_bias));
  ActivationSpec act;
  TF_RETURN_IF_ERROR(read_activation(c, &act));
  ShapeHandle y, merged;
  TF_RETURN_IF_ERROR(conv_output_shape(c, transpose, 1, 0, &y));
  if (!c->Merge(c->input(0), y, &merged).ok()) {
    return absl::InvalidArgumentError("dy must have the forward output's shape " +
                                      c->DebugString(y) + ", got " + c->DebugString(c->input(0)));
  }
  c->set_output(0, c->input(1));
  c->set_output(1, c->input(2));
  if (num_bias == 1) c->set_output(2, c->Vector(c->Dim(c->input(2), transpose ? 2 : 3)));
  return absl::OkStatus();
}

#define FUSEDLAYERS_CONV_ATTRS                                                         \
  Attr("T: {float, double, bfloat16, half}")                                           \
      .Attr("num_bias: int >= 0 = 0")                                                  \
      .Attr("strides: list(int) = [1, 1]")                                             \
      .Attr("dilations: list(int) = [1, 1]")                                           \
      .Attr("padding: string = 'valid'")                                               \
      .FUSEDLAYERS_ACTIVATION_ATTRS

}  // namespace

REGISTER_OP("FusedLayers>FusedConv2D")
    .Input("x: T")
    .Input("kernel: T")
    .Input("bias: num_bias * T")
    .Output("y: T")
    .Output("preactivation: T")
    .FUSEDLAYERS_CONV_ATTRS
    .SetShapeFn([](InferenceContext* c) { return forward_shape_fn(c, false); })
    .Doc(R"doc(
y = activation(conv2d(x, kernel) + bias): x [batch, h, w, in] (NHWC), kernel
[kh, kw, in, filters], bias [filters] (optional); padding 'valid' or 'same' as in
TensorFlow. preactivation holds conv + bias when the activation's gradient needs it,
else it is empty.
)doc");

REGISTER_OP("FusedLayers>FusedConv2DGrad")
    .Input("dy: T")
    .Input("x: T")
    .Input("kernel: T")
    .Input("y: T")
    .Input("preactivation: T")
    .Output("dx: T")
    .Output("dkernel: T")
    .Output("dbias: num_bias * T")
    .FUSEDLAYERS_CONV_ATTRS
    .SetShapeFn([](InferenceContext* c) { return grad_shape_fn(c, false); })
    .Doc(R"doc(
Gradient of FusedConv2D: dz = dy * activation'(.) formed while packing; dx is the
transposed convolution of dz, dkernel and dbias come out of one GEMM per pass.
)doc");

REGISTER_OP("FusedLayers>FusedConv2DTranspose")
    .Input("x: T")
    .Input("kernel: T")
    .Input("bias: num_bias * T")
    .Output("y: T")
    .Output("preactivation: T")
    .FUSEDLAYERS_CONV_ATTRS
    .Attr("output_padding: list(int) = []")
    .SetShapeFn([](InferenceContext* c) { return forward_shape_fn(c, true); })
    .Doc(R"doc(
y = activation(conv2d_transpose(x, kernel) + bias): x [batch, h, w, in] (NHWC), kernel
[kh, kw, filters, in] (Keras's layout), bias [filters] (optional). The output size
follows Keras 3's rule; output_padding empty means None.
)doc");

REGISTER_OP("FusedLayers>FusedConv2DTransposeGrad")
    .Input("dy: T")
    .Input("x: T")
    .Input("kernel: T")
    .Input("y: T")
    .Input("preactivation: T")
    .Output("dx: T")
    .Output("dkernel: T")
    .Output("dbias: num_bias * T")
    .FUSEDLAYERS_CONV_ATTRS
    .Attr("output_padding: list(int) = []")
    .SetShapeFn([](InferenceContext* c) { return grad_shape_fn(c, true); })
    .Doc(R"doc(
Gradient of FusedConv2DTranspose: dx is the convolution of dz = dy * activation'(.),
dkernel and dbias come out of one GEMM per sub-pixel phase.
)doc");

namespace {

// The validated geometry of a call and its output shape.
absl::Status conv_call_geometry(const Tensor& x, const Tensor& kernel, const ConvAttrs& attrs,
                                bool transpose, ConvGeometry* g, TensorShape* y_shape) {
  if (x.dims() != 4) {
    return absl::InvalidArgumentError("x must have rank 4 [batch, height, width, channels], got "
                                      "shape " + shape_string(x.shape()));
  }
  if (kernel.dims() != 4) {
    const char* layout = transpose ? "[kh, kw, filters, in_channels]" : "[kh, kw, in_channels, filters]";
    return absl::InvalidArgumentError(std::string("kernel must have rank 4 ") + layout +
                                      ", got shape " + shape_string(kernel.shape()));
  }
  int64_t xs[4], ks[4], out[4];
  for (int i = 0; i < 4; ++i) xs[i] = x.dim_size(i), ks[i] = kernel.dim_size(i);
  const std::string error = transpose ? conv2d_transpose_geometry(xs, ks, attrs, g)
                                      : conv2d_geometry(xs, ks, attrs, g);
  if (!error.empty()) return absl::InvalidArgumentError(error);
  if (transpose) {
    conv2d_transpose_output_shape(*g, out);
  } else {
    conv2d_output_shape(*g, out);
  }
  *y_shape = TensorShape();
  for (int i = 0; i < 4; ++i) TF_RETURN_IF_ERROR(y_shape->AddDimWithStatus(out[i]));
  return absl::OkStatus();
}

class FusedConvOpBase : public OpKernel {
 public:
  FusedConvOpBase(OpKernelConstruction* ctx, bool transpose)
      : OpKernel(ctx), transpose_(transpose) {
    OP_REQUIRES_OK(ctx, read_activation(ctx, &act_));
    OP_REQUIRES_OK(ctx, read_bias_count(ctx, &num_bias_));
    OP_REQUIRES_OK(ctx, read_conv_attrs(ctx, transpose, &attrs_));
  }

 protected:
  const bool transpose_;
  ActivationSpec act_;
  int num_bias_ = 0;
  ConvAttrs attrs_;
};

template <typename T, bool kTranspose>
class FusedConvOp : public FusedConvOpBase {
 public:
  explicit FusedConvOp(OpKernelConstruction* ctx) : FusedConvOpBase(ctx, kTranspose) {}

  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    const Tensor& kernel = ctx->input(1);
    tensorflow::OpInputList bias;
    OP_REQUIRES_OK(ctx, ctx->input_list("bias", &bias));
    ConvGeometry g;
    TensorShape y_shape;
    OP_REQUIRES_OK(ctx, conv_call_geometry(x, kernel, attrs_, kTranspose, &g, &y_shape));
    const int64_t filters = y_shape.dim_size(3);
    OP_REQUIRES(ctx, bias.size() == 0 || (bias[0].dims() == 1 && bias[0].dim_size(0) == filters),
                absl::InvalidArgumentError("bias must have shape [filters] = [" +
                                           std::to_string(filters) + "], got " +
                                           shape_string(bias[0].shape())));
    const bool save_z = grad_needs_preactivation(act_);
    Tensor* y = nullptr;
    Tensor* z = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, y_shape, &y));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, save_z ? y_shape : TensorShape({0}), &z));
    if (y_shape.num_elements() == 0) return;

    ConvForwardArgs<typename KernelType<T>::type> args;
    args.x = kernel_ptr<T>(x);
    args.kernel = kernel_ptr<T>(kernel);
    args.bias = bias.size() ? kernel_ptr<T>(bias[0]) : nullptr;
    args.y = kernel_ptr<T>(y);
    args.z = save_z ? kernel_ptr<T>(z) : nullptr;
    args.geometry = g;
    args.act = act_;
    TfTaskRunner runner(ctx);
    if (kTranspose) {
      conv2d_transpose_forward(args, runner);
    } else {
      conv2d_forward(args, runner);
    }
  }
};

template <typename T, bool kTranspose>
class FusedConvGradOp : public FusedConvOpBase {
 public:
  explicit FusedConvGradOp(OpKernelConstruction* ctx) : FusedConvOpBase(ctx, kTranspose) {}

  void Compute(OpKernelContext* ctx) override {
    const Tensor& dy = ctx->input(0);
    const Tensor& x = ctx->input(1);
    const Tensor& kernel = ctx->input(2);
    const Tensor& y = ctx->input(3);
    const Tensor& z = ctx->input(4);
    ConvGeometry g;
    TensorShape y_shape;
    OP_REQUIRES_OK(ctx, conv_call_geometry(x, kernel, attrs_, kTranspose, &g, &y_shape));
    OP_REQUIRES(ctx, dy.shape() == y_shape,
                absl::InvalidArgumentError("dy must have the forward output's shape " +
                                           shape_string(y_shape) + ", got " +
                                           shape_string(dy.shape())));
    OP_REQUIRES(ctx, y.shape() == y_shape,
                absl::InvalidArgumentError("y must have the forward output's shape " +
                                           shape_string(y_shape) + ", got " +
                                           shape_string(y.shape())));
    const bool need_z = grad_needs_preactivation(act_);
    OP_REQUIRES(ctx, !need_z || z.shape() == y_shape,
                absl::InvalidArgumentError(
                    std::string("preactivation must have the forward output's shape ") +
                    shape_string(y_shape) + " for activation '" +
                    kActivationNames[static_cast<int>(act_.kind)] + "', got " +
                    shape_string(z.shape())));

    Tensor* dx = nullptr;
    Tensor* dkernel = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, x.shape(), &dx));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, kernel.shape(), &dkernel));
    tensorflow::OpOutputList db_list;
    OP_REQUIRES_OK(ctx, ctx->output_list("dbias", &db_list));
    Tensor* db = nullptr;
    if (num_bias_ == 1) {
      OP_REQUIRES_OK(ctx, db_list.allocate(0, TensorShape({y_shape.dim_size(3)}), &db));
    }
    if (y_shape.num_elements() == 0) {
      // An empty output has all-zero gradients; the kernels would still walk every
      // position of a huge but empty batch.
      dx->flat<T>().setZero();
      dkernel->flat<T>().setZero();
      if (db) db->flat<T>().setZero();
      return;
    }

    ConvBackwardArgs<typename KernelType<T>::type> args;
    args.dy = kernel_ptr<T>(dy);
    args.x = kernel_ptr<T>(x);
    args.kernel = kernel_ptr<T>(kernel);
    args.y = kernel_ptr<T>(y);
    args.z = need_z ? kernel_ptr<T>(z) : nullptr;
    args.dx = kernel_ptr<T>(dx);
    args.dkernel = kernel_ptr<T>(dkernel);
    args.dbias = db ? kernel_ptr<T>(db) : nullptr;
    args.geometry = g;
    args.act = act_;
    TfTaskRunner runner(ctx);
    if (kTranspose) {
      conv2d_transpose_backward(args, runner);
    } else {
      conv2d_backward(args, runner);
    }
  }
};

#define FUSEDLAYERS_REGISTER_CONV(T)                                                      \
  REGISTER_KERNEL_BUILDER(                                                                \
      Name("FusedLayers>FusedConv2D").Device(tensorflow::DEVICE_CPU).TypeConstraint<T>("T"), \
      FusedConvOp<T, false>);                                                           \
  REGISTER_KERNEL_BUILDER(Name("FusedLayers>FusedConv2DGrad")                             \
                              .Device(tensorflow::DEVICE_CPU)                             \
                              .TypeConstraint<T>("T"),                                    \
                          FusedConvGradOp<T, false>);                                   \
  REGISTER_KERNEL_BUILDER(Name("FusedLayers>FusedConv2DTranspose")                        \
                              .Device(tensorflow::DEVICE_CPU)                             \
                              .TypeConstraint<T>("T"),                                    \
                          FusedConvOp<T, true>);                                        \
  REGISTER_KERNEL_BUILDER(Name("FusedLayers>FusedConv2DTransposeGrad")                    \
                              .Device(tensorflow::DEVICE_CPU)                             \
                              .TypeConstraint<T>("T"),                                    \
                          FusedConvGradOp<T, true>);
FUSEDLAYERS_REGISTER_CONV(float)
FUSEDLAYERS_REGISTER_CONV(double)
FUSEDLAYERS_REGISTER_CONV(Eigen::bfloat16)
FUSEDLAYERS_REGISTER_CONV(Eigen::half)
#undef FUSEDLAYERS_REGISTER_CONV

}  // namespace
}  // namespace fusedlayers
