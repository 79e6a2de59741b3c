"""Argument checks shared by the op wrappers."""

import tensorflow as tf

from fusedlayers import activations

FLOAT_DTYPES = (tf.float16, tf.bfloat16, tf.float32, tf.float64)
_DTYPE_NAMES = ", ".join(d.name for d in FLOAT_DTYPES)


def as_float_tensor(value, arg_name, dtype=None):
    """Converts `value` to a tensor of a supported float dtype (matching `dtype` when given)."""
    tensor = tf.convert_to_tensor(value, dtype_hint=dtype or tf.float32)
    if tensor.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{arg_name} must be one of {_DTYPE_NAMES}, got {tensor.dtype.name}")
    if dtype is not None and tensor.dtype != dtype:
        raise TypeError(
            f"{arg_name} must have the input's dtype {dtype.name}, got {tensor.dtype.name}"
        )
    return tensor


def activation_attrs(activation):
    """The op attributes for an activation (a name, a callable or None)."""
    spec = activations.get(activation)
    return {"activation": spec.name, "leaky_slope": float(spec.slope)}


def bias_list(bias, dtype, arg_name="bias"):
    """The ops take the optional bias as a list of zero or one tensor."""
    return [] if bias is None else [as_float_tensor(bias, arg_name, dtype)]
