"""Every class of rejection names the argument, what was expected and what was received.

Op-level cases run twice: eagerly (the kernel's OP_REQUIRES) and traced with full shapes
(the shape function), which must reject with the same message.
"""

import math

import pytest
import tensorflow as tf

import fusedlayers as fl
from fusedlayers._loader import gen_ops

ones = tf.ones


def dense(x, kernel, bias=None, activation=None):
    return lambda: fl.ops.fused_dense(x, kernel, bias, activation=activation)


def raw_dense(x, kernel, bias=(), **attrs):
    return lambda: gen_ops.fused_layers_fused_dense(x=x, kernel=kernel, bias=list(bias), **attrs)


def raw_dense_grad(dy, x, kernel, y, preactivation, **attrs):
    return lambda: gen_ops.fused_layers_fused_dense_grad(
        dy=dy, x=x, kernel=kernel, y=y, preactivation=preactivation, **attrs)


# (id, call, regex the message must match: argument, expected ... received)
OP_CASES = [
    ("x_rank", raw_dense(ones((3,)), ones((3, 4))),
     r"x must have rank >= 2 \(\[\.\.\., K\]\), got shape \[3\]"),
    ("kernel_rank", dense(ones((2, 3)), ones((3, 4, 1))),
     r"kernel must have rank 2 \(\[K, N\]\), got shape \[3,4,1\]"),
    ("depth_mismatch", dense(ones((2, 3)), ones((4, 5))),
     r"kernel must have shape \[K, N\] with K = x's last dimension 3, got kernel shape \[4,5\]"),
    ("bias_shape", dense(ones((2, 3)), ones((3, 4)), ones((5,))),
     r"bias must have shape \[N\] = \[4\], got \[5\]"),
    ("bias_rank", dense(ones((2, 3)), ones((3, 4)), ones((1, 4))),
     r"bias must have (rank 1 \(\[N\]\)|shape \[N\] = \[4\]), got (shape )?\[1,4\]"),
    ("activation_attr", raw_dense(ones((2, 3)), ones((3, 4)), activation="mish"),
     r"activation must be one of \{linear, relu, .*softplus\}, got 'mish'"),
    ("leaky_slope_attr", raw_dense(ones((2, 3)), ones((3, 4)), activation="leaky_relu",
                                   leaky_slope=math.inf),
     r"leaky_slope must be finite, got inf"),
    ("num_bias", raw_dense(ones((2, 3)), ones((3, 4)), [ones((4,))] * 2),
     r"num_bias must be 0 or 1, got 2"),
    ("overflow", dense(tf.zeros((2**40, 0)), tf.zeros((0, 2**30))),
     r"overflows int64: 1099511627776 \* 1073741824"),
    ("grad_dy", raw_dense_grad(ones((2, 5)), ones((2, 3)), ones((3, 4)), ones((2, 4)),
                               ones((0,)), activation="relu"),
     r"dy must have the forward output's shape \[2,4\], got \[2,5\]"),
    ("grad_y", raw_dense_grad(ones((2, 4)), ones((2, 3)), ones((3, 4)), ones((4, 2)),
                              ones((0,)), activation="relu"),
     r"y must have the forward output's shape \[2,4\], got \[4,2\]"),
    ("grad_preactivation", raw_dense_grad(ones((2, 4)), ones((2, 3)), ones((3, 4)),
                                          ones((2, 4)), ones((0,)), activation="gelu"),
     r"preactivation must have the forward output's shape \[2,4\].*got \[0\]"),
    ("grad_depth_mismatch", raw_dense_grad(ones((2, 4)), ones((2, 3)), ones((5, 4)),
                                           ones((2, 4)), ones((0,))),
     r"kernel must have shape \[K, N\] with K = x's last dimension 3, got kernel shape \[5,4\]"),
    ("grad_num_bias", raw_dense_grad(ones((2, 4)), ones((2, 3)), ones((3, 4)), ones((2, 4)),
                                     ones((0,)), num_bias=3),
     r"num_bias must be 0 or 1, got 3"),
]


def conv(x, kernel, bias=None, transpose=False, **attrs):
    op = fl.ops.fused_conv2d_transpose if transpose else fl.ops.fused_conv2d
    return lambda: op(x, kernel, bias, **attrs)


def raw_conv(x, kernel, transpose=False, **attrs):
    op = (gen_ops.fused_layers_fused_conv2d_transpose if transpose
          else gen_ops.fused_layers_fused_conv2d)
    return lambda: op(x=x, kernel=kernel, bias=[], **attrs)


def raw_conv_grad(dy, x, kernel, y, preactivation, **attrs):
    return lambda: gen_ops.fused_layers_fused_conv2d_grad(
        dy=dy, x=x, kernel=kernel, y=y, preactivation=preactivation, **attrs)


image = ones((1, 4, 4, 3))
CONV_OP_CASES = [
    ("conv_x_rank", conv(ones((4, 4, 3)), ones((3, 3, 3, 2))),
     r"x must have rank 4 \[batch, height, width, channels\], got shape \[4,4,3\]"),
    ("conv_kernel_rank", conv(image, ones((3, 3, 3))),
     r"kernel must have rank 4 \[kh, kw, in_channels, filters\], got shape \[3,3,3\]"),
    ("conv_channels", conv(image, ones((3, 3, 2, 5))),
     r"kernel must have shape \[kh, kw, in_channels, filters\] with in_channels = x's channels "
     r"3, got kernel shape \[3, ?3, ?2, ?5\]"),
    ("conv_transpose_channels", conv(image, ones((3, 3, 5, 2)), transpose=True),
     r"kernel must have shape \[kh, kw, filters, in_channels\] with in_channels = x's channels "
     r"3, got kernel shape \[3, ?3, ?5, ?2\]"),
    ("conv_bias_shape", conv(image, ones((3, 3, 3, 5)), ones((4,))),
     r"bias must have shape \[filters\] = \[5\], got \[4\]"),
    ("conv_strides", raw_conv(image, ones((3, 3, 3, 5)), strides=[0, 1]),
     r"strides must be >= 1, got \[0, 1\]"),
    ("conv_strides_length", raw_conv(image, ones((3, 3, 3, 5)), strides=[1, 1, 1]),
     r"strides must have 2 values \(height, width\), got \[1, 1, 1\]"),
    ("conv_dilations", raw_conv(image, ones((3, 3, 3, 5)), dilations=[1, -2]),
     r"dilations must be >= 1, got \[1, -2\]"),
    ("conv_strides_with_dilations",
     raw_conv(ones((1, 8, 8, 3)), ones((3, 3, 3, 5)), strides=[2, 2], dilations=[2, 2]),
     r"strides > 1 is not supported together with dilations > 1 .*got strides \[2, 2\] and "
     r"dilations \[2, 2\]"),
    ("conv_padding", raw_conv(image, ones((3, 3, 3, 5)), padding="SAMEX"),
     r"padding must be 'valid' or 'same', got 'SAMEX'"),
    ("conv_output_padding",
     raw_conv(image, ones((3, 3, 5, 3)), transpose=True, strides=[2, 2], output_padding=[2, 0]),
     r"output_padding must be >= 0 and strictly less than strides, got output_padding \[2, 0\] "
     r"with strides \[2, 2\]"),
    ("conv_valid_kernel_larger_than_input", conv(image, ones((5, 3, 3, 5))),
     r"padding 'valid' needs the input height \(4\) to be at least the dilated kernel height "
     r"\(5\)"),
    ("conv_transpose_same_even_kernel",
     conv(image, ones((4, 4, 5, 3)), transpose=True, strides=2, padding="same", output_padding=0),
     r"output_padding 0 with padding 'same' and an even dilated kernel height \(4\) gives an "
     r"output height of 6, which is inconsistent with the input height 4"),
    ("conv_grad_dy", raw_conv_grad(ones((1, 2, 2, 4)), image, ones((3, 3, 3, 5)),
                                   ones((1, 2, 2, 5)), ones((0,))),
     r"dy must have the forward output's shape \[1,2,2,5\], got \[1,2,2,4\]"),
]
CONV_OP_CASES.append(
    ("conv_overflow", conv(tf.zeros((0, 2**40, 4, 3)), ones((3, 3, 5, 3)), transpose=True,
                           strides=2**30, padding="valid"),
     r"the output height overflows int64 \(input 1099511627776, stride 1073741824\)"))
OP_CASES += CONV_OP_CASES
# The output-size overflows are found when the kernel runs (from the tensors' sizes).
RUNTIME_ONLY_CASES = {"overflow", "conv_overflow"}


def traced(call):
    """The same call inside a tf.function whose inputs are the call's constant tensors."""
    return lambda: tf.function(call)()


@pytest.mark.parametrize("case_id,call,pattern", OP_CASES, ids=[c[0] for c in OP_CASES])
def test_op_rejection_names_argument_expected_and_received_eagerly(case_id, call, pattern):
    with pytest.raises(tf.errors.InvalidArgumentError, match=pattern):
        call()


SHAPE_FN_CASES = [c for c in OP_CASES if c[0] not in RUNTIME_ONLY_CASES]


@pytest.mark.parametrize("case_id,call,pattern", SHAPE_FN_CASES,
                         ids=[c[0] for c in SHAPE_FN_CASES])
def test_shape_function_rejects_with_the_same_message(case_id, call, pattern):
    with pytest.raises((ValueError, tf.errors.InvalidArgumentError), match=pattern):
        traced(call)()


PYTHON_CASES = [
    ("integer_x", TypeError, dense(tf.ones((2, 3), tf.int32), ones((3, 4))),
     r"x must be one of float16, bfloat16, float32, float64, got int32"),
    ("kernel_dtype", TypeError, dense(ones((2, 3)), tf.ones((3, 4), tf.float64)),
     r"kernel must have the input's dtype float32, got float64"),
    ("bias_dtype", TypeError, dense(ones((2, 3)), ones((3, 4)), tf.ones((4,), tf.float16)),
     r"bias must have the input's dtype float32, got float16"),
    ("activation_name", ValueError, dense(ones((2, 3)), ones((3, 4)), activation="mish"),
     r"Unsupported activation 'mish'.*one of linear, relu"),
    ("units", ValueError, lambda: fl.Dense(0),
     r"units must be a positive integer, got 0"),
    ("layer_activation", ValueError, lambda: fl.Dense(3, activation="mish"),
     r"Unsupported activation 'mish'"),
    ("layer_dtype", TypeError, lambda: fl.Dense(3, dtype="int32"),
     r"dtype must be floating .*got int32"),
    ("channels_first_uncountable", ValueError,
     lambda: fl.Conv2D(1, 1, data_format="channels_first")(tf.zeros((2**62, 0, 1, 2))),
     r"inputs: expected a shape whose transposed form counts at most 2\^63 - 1 elements up "
     r"to its first zero dimension .*got \[4611686018427387904, 0, 1, 2\], transposed "
     r"\[4611686018427387904, 1, 2, 0\]"),
]


@pytest.mark.parametrize("case_id,error,call,pattern", PYTHON_CASES,
                         ids=[c[0] for c in PYTHON_CASES])
def test_python_rejection_names_argument_expected_and_received(case_id, error, call, pattern):
    with pytest.raises(error, match=pattern):
        call()


def test_layer_input_depth_change_names_expected_and_received():
    layer = fl.Dense(2)
    layer(ones((1, 3)))
    with pytest.raises(ValueError, match=r"expected inputs with last dimension 3, got shape "
                                         r"\(2, 4\) \(last dimension 4\)"):
        layer(ones((2, 4)))


def test_layer_scalar_input_after_build_names_expected_and_received():
    layer = fl.Dense(1)
    layer(ones((0, 1)))
    with pytest.raises(ValueError, match=r"expected inputs with last dimension 1, got shape "
                                         r"\(\) \(no last dimension\)"):
        layer(ones(()))


def test_raw_op_dtype_mismatch_is_rejected_by_tensorflow_before_the_kernel():
    """The T attribute ties every input's dtype; TensorFlow's own checks name the input."""
    call = raw_dense(ones((2, 3)), tf.ones((3, 4), tf.float64))
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"input #1.*expected to be a float tensor but is a double"):
        call()
    with pytest.raises(TypeError, match=r"Input 'kernel' .* has type float64 that does not "
                                        r"match type float32 of argument 'x'"):
        traced(call)()
