"""Stock references for the conv tests: Keras layers holding given weights, and tf.nn compositions."""

import itertools

import keras
import numpy as np
import tensorflow as tf

import fusedlayers as fl
from fusedlayers.activations import NAMES, reference


def random(shape, dtype, scale=1.0):
    return tf.cast(np.random.uniform(-scale, scale, size=shape), dtype)


def keras_layer(transpose, kernel, bias, strides, padding, dilation, activation,
                output_padding=None, data_format="channels_last", dtype=tf.float32):
    """A built stock Keras layer holding `kernel` and `bias`."""
    kwargs = dict(filters=kernel.shape[2 if transpose else 3], kernel_size=tuple(kernel.shape[:2]),
                  strides=strides, padding=padding, dilation_rate=dilation,
                  activation=reference(activation), use_bias=bias is not None,
                  data_format=data_format, dtype=tf.as_dtype(dtype).name)
    if transpose:
        layer = keras.layers.Conv2DTranspose(output_padding=output_padding, **kwargs)
    else:
        layer = keras.layers.Conv2D(**kwargs)
    in_channels = kernel.shape[3 if transpose else 2]
    layer.build((None, in_channels, None, None) if data_format == "channels_first"
                else (None, None, None, in_channels))
    layer.set_weights([np.asarray(kernel)] + ([np.asarray(bias)] if bias is not None else []))
    return layer


def fused(transpose, x, kernel, bias, strides, padding, dilation, activation,
          output_padding=None):
    if transpose:
        return fl.ops.fused_conv2d_transpose(x, kernel, bias, strides=strides, padding=padding,
                                             output_padding=output_padding,
                                             dilation_rate=dilation, activation=activation)
    return fl.ops.fused_conv2d(x, kernel, bias, strides=strides, padding=padding,
                               dilation_rate=dilation, activation=activation)


def stock_composition(transpose, x, kernel, bias, strides, padding, dilation, activation,
                      output_shape=None):
    """tf.nn.conv2d / conv2d_transpose + bias_add + activation (what autodiff sees)."""
    if transpose:
        z = tf.nn.conv2d_transpose(x, kernel, output_shape, strides, padding.upper(),
                                   dilations=dilation)
    else:
        z = tf.nn.conv2d(x, kernel, strides, padding.upper(), dilations=dilation)
    if bias is not None:
        z = tf.nn.bias_add(z, bias)
    return reference(activation)(z)


def keras_rejects_same_output_padding(input_hw, kernel, dilation, padding, output_padding):
    """TensorFlow's Conv2DTranspose fails when 'same' padding, an even dilated kernel
    and output_padding 0 meet on an axis (the output maps back to one row fewer),
    unless the output is empty (an input size of 1)."""
    if padding != "same" or output_padding is None:
        return False
    return any(((k - 1) * d + 1) % 2 == 0 and p == 0 and size > 1
               for size, k, d, p in zip(input_hw, kernel, dilation, output_padding))


def grid(transpose):
    """The parameter grid: (kernel, strides, padding, output_padding, dilation).

    Kernel 1-5, strides 1-3, both paddings, every legal output_padding (None, then
    each value below the stride) for the transpose, dilation 1-2 where Keras allows it
    (only with stride 1).
    """
    cases = []
    for k, s, padding in itertools.product(range(1, 6), range(1, 4), ("valid", "same")):
        for d in (1, 2) if s == 1 else (1,):
            paddings = [None] + list(range(s)) if transpose else [None]
            for op in paddings:
                cases.append(((k, k), (s, s), padding,
                              None if op is None else (op, op), (d, d)))
    return cases


SPATIAL = [(1, 1), (2, 3), (5, 4), (7, 7), (3, 8)]


def case_inputs(index, case, transpose, dtype=tf.float32):
    """Deterministic x, kernel, bias for grid case `index`: spatial size, channel counts
    (odd) and activation rotate with the index, so the grid covers them all."""
    kernel_hw, strides, padding, _, dilation = case
    h, w = SPATIAL[index % len(SPATIAL)]
    if not transpose and padding == "valid":  # the input must hold the dilated kernel
        h = max(h, (kernel_hw[0] - 1) * dilation[0] + 1)
        w = max(w, (kernel_hw[1] - 1) * dilation[1] + 1)
    in_c, out_c = (3, 5) if index % 2 else (1, 7)
    batch = 1 + index % 3
    kernel_shape = kernel_hw + ((out_c, in_c) if transpose else (in_c, out_c))
    x = random((batch, h, w, in_c), dtype, 2.0)
    kernel = random(kernel_shape, dtype, 0.5)
    bias = random((out_c,), dtype, 0.5) if index % 4 != 3 else None
    return x, kernel, bias, NAMES[index % len(NAMES)]
