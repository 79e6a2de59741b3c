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


def traced(call):
    """The same call inside a tf.function whose inputs are the call's constant tensors."""
    return lambda: tf.function(call)()


@pytest.mark.parametrize("case_id,call,pattern", OP_CASES, ids=[c[0] for c in OP_CASES])
def test_op_rejection_names_argument_expected_and_received_eagerly(case_id, call, pattern):
    with pytest.raises(tf.errors.InvalidArgumentError, match=pattern):
        call()


# The output-size overflow is a property of the tensors, found when the kernel runs.
SHAPE_FN_CASES = [c for c in OP_CASES if c[0] != "overflow"]


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


def test_raw_op_dtype_mismatch_is_rejected_by_tensorflow_before_the_kernel():
    """The T attribute ties every input's dtype; TensorFlow's own checks name the input."""
    call = raw_dense(ones((2, 3)), tf.ones((3, 4), tf.float64))
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"input #1.*expected to be a float tensor but is a double"):
        call()
    with pytest.raises(TypeError, match=r"Input 'kernel' .* has type float64 that does not "
                                        r"match type float32 of argument 'x'"):
        traced(call)()
