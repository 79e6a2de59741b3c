"""fused_conv2d / fused_conv2d_transpose: convolution + bias + activation as one op each, with fused gradients."""

import tensorflow as tf

from fusedlayers._loader import gen_ops
from fusedlayers.ops._common import (activation_attrs, as_float_tensor, bias_list,
                                     forward_outputs_for_grad, op_scope)


def normalize_pair(value, arg_name, allow_none=False):
    """An int or a pair of ints as a list of 2 ints (None kept when allowed)."""
    if value is None and allow_none:
        return None
    values = (value, value) if isinstance(value, int) else value
    try:
        values = list(values)
    except TypeError:
        values = None
    if (values is None or len(values) != 2
            or any(isinstance(v, bool) or not isinstance(v, int) for v in values)):
        expected = "None, " if allow_none else ""
        raise ValueError(f"{arg_name} must be {expected}an int or a pair of ints, got {value!r}")
    return values


def normalize_padding(padding):
    """'valid' or 'same', case-insensitively, as Keras accepts it."""
    if not isinstance(padding, str) or padding.lower() not in ("valid", "same"):
        raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}")
    return padding.lower()


def _conv_attrs(strides, padding, dilation_rate):
    return {
        "strides": normalize_pair(strides, "strides"),
        "padding": normalize_padding(padding),
        "dilations": normalize_pair(dilation_rate, "dilation_rate"),
    }


def fused_conv2d(x, kernel, bias=None, strides=1, padding="valid", dilation_rate=1,
                 activation=None, name=None):
    """Returns activation(conv2d(x, kernel) + bias) computed by one fused C++ op.

    Args:
      x: [batch, height, width, in_channels] (NHWC), float16, bfloat16, float32 or float64.
      kernel: [kh, kw, in_channels, filters] (keras.layers.Conv2D's layout), x's dtype.
      bias: [filters] or None.
      strides, dilation_rate: an int or a pair (height, width); strides > 1 and
        dilation_rate > 1 cannot be combined (as in Keras).
      padding: 'valid' or 'same' (TensorFlow's split: the extra row/column after).
      activation: None/'linear', a name from fusedlayers.activations.NAMES, or the
        matching keras.activations / tf.nn callable.
    """
    attrs = {**_conv_attrs(strides, padding, dilation_rate), **activation_attrs(activation)}
    with op_scope(name or "fused_conv2d"):
        x = as_float_tensor(x, "x")
        kernel = as_float_tensor(kernel, "kernel", x.dtype)
        y, _ = gen_ops.fused_layers_fused_conv2d(
            x=x, kernel=kernel, bias=bias_list(bias, x.dtype), **attrs)
        return y


def fused_conv2d_transpose(x, kernel, bias=None, strides=2, padding="same", output_padding=None,
                           dilation_rate=1, activation=None, name=None):
    """Returns activation(conv2d_transpose(x, kernel) + bias) computed by one fused C++ op.

    Args:
      x: [batch, height, width, in_channels] (NHWC), float16, bfloat16, float32 or float64.
      kernel: [kh, kw, filters, in_channels] (keras.layers.Conv2DTranspose's layout).
      bias: [filters] or None.
      strides, dilation_rate: an int or a pair (height, width).
      padding: 'valid' or 'same'.
      output_padding: None, an int or a pair, each strictly less than its stride; the
        output size follows keras.layers.Conv2DTranspose's rule exactly.
      activation: as for fused_conv2d.
    """
    attrs = {**_conv_attrs(strides, padding, dilation_rate), **activation_attrs(activation)}
    attrs["output_padding"] = normalize_pair(output_padding, "output_padding",
                                             allow_none=True) or []
    with op_scope(name or "fused_conv2d_transpose"):
        x = as_float_tensor(x, "x")
        kernel = as_float_tensor(kernel, "kernel", x.dtype)
        y, _ = gen_ops.fused_layers_fused_conv2d_transpose(
            x=x, kernel=kernel, bias=bias_list(bias, x.dtype), **attrs)
        return y


def _forwarded_attrs(op, names):
    return {n: op.get_attr(n) for n in names}


_GRAD_ATTRS = ("num_bias", "strides", "dilations", "padding", "activation", "leaky_slope")


def _conv_grad(grad_op, op, dy, extra_attrs=()):
    y, preactivation = forward_outputs_for_grad(op, dy)
    dx, dkernel, dbias = grad_op(
        dy=dy, x=op.inputs[0], kernel=op.inputs[1], y=y, preactivation=preactivation,
        **_forwarded_attrs(op, _GRAD_ATTRS + extra_attrs))
    return [dx, dkernel] + list(dbias)


@tf.RegisterGradient("FusedLayers>FusedConv2D")
def _fused_conv2d_grad(op, dy, _unused_dpreactivation):
    return _conv_grad(gen_ops.fused_layers_fused_conv2d_grad, op, dy)


@tf.RegisterGradient("FusedLayers>FusedConv2DTranspose")
def _fused_conv2d_transpose_grad(op, dy, _unused_dpreactivation):
    return _conv_grad(gen_ops.fused_layers_fused_conv2d_transpose_grad, op, dy,
                      ("output_padding",))
