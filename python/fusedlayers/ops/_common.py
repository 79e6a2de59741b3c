"""Argument checks shared by the op wrappers."""

import contextlib

import tensorflow as tf

from fusedlayers import activations

FLOAT_DTYPES = (tf.float16, tf.bfloat16, tf.float32, tf.float64)
_DTYPE_NAMES = ", ".join(d.name for d in FLOAT_DTYPES)


_FLOAT_NAMES = frozenset(d.name for d in FLOAT_DTYPES)


def as_float_tensor(value, arg_name, dtype=None):
    """Checks that `value` is a tensor of a supported float dtype (matching `dtype` when
    given), converting anything that is not a tensor or a variable already.

    Variables pass through as they are: the op reads them itself, which in eager mode
    costs less than a separate read, and dtypes compare by name (cheaper than DType ==).
    """
    if isinstance(value, (tf.Tensor, tf.Variable)):
        tensor = value
    else:
        tensor = tf.convert_to_tensor(value, dtype_hint=dtype or tf.float32)
    name = tensor.dtype.name
    if name not in _FLOAT_NAMES:
        raise TypeError(f"{arg_name} must be one of {_DTYPE_NAMES}, got {name}")
    if dtype is not None and name != dtype.name:
        raise TypeError(f"{arg_name} must have the input's dtype {dtype.name}, got {name}")
    return tensor


def forward_outputs_for_grad(op, dy):
    """(y, preactivation) of a fused forward op as its gradient op is to read them.

    A linear activation's gradient reads neither (dz is dy): dy stands in for y and an
    empty tensor for the preactivation, so the gradient does not depend on the forward
    op, which TensorFlow then prunes where only gradients are used (as it prunes stock's
    forward convolution or matmul).
    """
    if tf.compat.as_str(op.get_attr("activation")) == "linear":
        return dy, tf.zeros([0], dy.dtype)
    return op.outputs[0], op.outputs[1]


def op_scope(name):
    """A name scope for the op in graphs; nothing in eager mode, where names are unused
    and entering a scope costs as much as a small op."""
    return contextlib.nullcontext() if tf.executing_eagerly() else tf.name_scope(name)


def activation_attrs(activation):
    """The op attributes for an activation (a name, a callable or None)."""
    spec = activations.get(activation)
    return {"activation": spec.name, "leaky_slope": float(spec.slope)}


def bias_list(bias, dtype, arg_name="bias"):
    """The ops take the optional bias as a list of zero or one tensor."""
    return [] if bias is None else [as_float_tensor(bias, arg_name, dtype)]
