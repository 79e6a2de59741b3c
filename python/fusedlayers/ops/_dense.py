"""fused_dense: y = activation(x @ kernel + bias) as one op, with a one-op fused gradient."""

import tensorflow as tf

from fusedlayers._loader import gen_ops
from fusedlayers.ops._common import (activation_attrs, as_float_tensor, bias_list,
                                     forward_outputs_for_grad, op_scope)


def fused_dense(x, kernel, bias=None, activation=None, name=None):
    """Returns activation(x @ kernel + bias) computed by one fused C++ op.

    Args:
      x: [..., K] float tensor (float16, bfloat16, float32 or float64); rank 1 is
        treated as a single row.
      kernel: [K, N], x's dtype.
      bias: [N] or None.
      activation: None/'linear', a name from fusedlayers.activations.NAMES, or the
        matching keras.activations / tf.nn callable.
    """
    attrs = activation_attrs(activation)
    with op_scope(name or "fused_dense"):
        x = as_float_tensor(x, "x")
        kernel = as_float_tensor(kernel, "kernel", x.dtype)
        biases = bias_list(bias, x.dtype)
        if x.shape.rank == 1:
            y, _ = gen_ops.fused_layers_fused_dense(
                x=x[tf.newaxis], kernel=kernel, bias=biases, **attrs)
            return y[0]
        y, _ = gen_ops.fused_layers_fused_dense(x=x, kernel=kernel, bias=biases, **attrs)
        return y


@tf.RegisterGradient("FusedLayers>FusedDense")
def _fused_dense_grad(op, dy, _unused_dpreactivation):
    y, preactivation = forward_outputs_for_grad(op, dy)
    dx, dkernel, dbias = gen_ops.fused_layers_fused_dense_grad(
        dy=dy,
        x=op.inputs[0],
        kernel=op.inputs[1],
        y=y,
        preactivation=preactivation,
        num_bias=op.get_attr("num_bias"),
        activation=op.get_attr("activation"),
        leaky_slope=op.get_attr("leaky_slope"),
    )
    return [dx, dkernel] + list(dbias)
