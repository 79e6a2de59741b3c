"""fl.ops.fused_conv2d_transpose and fl.Conv2DTranspose against keras.layers.Conv2DTranspose and tf.nn."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import fusedlayers as fl
from conftest import FLOAT_DTYPES, assert_close
from conv_reference import (case_inputs, fused, grid, keras_layer,
                            keras_rejects_same_output_padding, random, stock_composition)
from fusedlayers._loader import gen_ops
from fusedlayers.activations import NAMES

GRID = grid(transpose=True)


@pytest.mark.parametrize("index,case", list(enumerate(GRID)),
                         ids=[f"k{c[0][0]}s{c[1][0]}{c[2]}op{c[3] and c[3][0]}d{c[4][0]}"
                              for c in GRID])
def test_grid_matches_keras(index, case):
    kernel_hw, strides, padding, output_padding, dilation = case
    x, kernel, bias, activation = case_inputs(index, case, transpose=True)
    layer = keras_layer(True, kernel, bias, strides, padding, dilation, activation, output_padding)
    args = (True, x, kernel, bias, strides, padding, dilation, activation, output_padding)
    if keras_rejects_same_output_padding(x.shape[1:3], kernel_hw, dilation, padding,
                                         output_padding):
        with pytest.raises(tf.errors.OpError):
            layer(x)
        with pytest.raises(tf.errors.InvalidArgumentError, match="inconsistent with the input"):
            fused(*args)
        return
    assert_close(fused(*args), layer(x), rtol=1e-4)


SHAPES = [  # (x shape, kernel shape [kh, kw, filters, in], strides, padding, output_padding)
    ((2, 4, 4, 3), (4, 4, 5, 3), 2, "same", None),
    ((1, 3, 5, 2), (3, 3, 3, 2), 2, "valid", 1),
    ((2, 5, 3, 1), (2, 3, 4, 1), (1, 3), "same", None),
]


@pytest.mark.parametrize("activation", NAMES)
@pytest.mark.parametrize("x_shape,k_shape,strides,padding,output_padding", SHAPES)
def test_every_activation_matches_keras(activation, x_shape, k_shape, strides, padding,
                                        output_padding):
    x, kernel, bias = random(x_shape, tf.float32, 2.0), random(k_shape, tf.float32, 0.5), \
        random(k_shape[2:3], tf.float32)
    layer = keras_layer(True, kernel, bias, strides, padding, 1, activation, output_padding)
    assert_close(fused(True, x, kernel, bias, strides, padding, 1, activation, output_padding),
                 layer(x), rtol=1e-4)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("activation", ["linear", "relu", "gelu", "sigmoid"])
def test_dtypes_match_float64_reference(dtype, activation):
    x, kernel, bias = random((2, 5, 4, 3), dtype, 2.0), random((3, 3, 6, 3), dtype, 0.5), \
        random((6,), dtype)
    actual = fl.ops.fused_conv2d_transpose(x, kernel, bias, strides=2, padding="same",
                                           activation=activation)
    cast = [tf.cast(v, tf.float64) for v in (x, kernel, bias)]
    expected = stock_composition(True, *cast, (2, 2), "same", (1, 1), activation,
                                 output_shape=(2, 10, 8, 6))
    assert actual.dtype == dtype
    assert_close(actual, expected, dtype)


def test_batch_zero_forward_and_gradient():
    x, kernel, bias = tf.zeros((0, 3, 3, 2)), random((3, 3, 4, 2), tf.float32), \
        random((4,), tf.float32)
    with tf.GradientTape() as tape:
        tape.watch([x, kernel, bias])
        y = fl.ops.fused_conv2d_transpose(x, kernel, bias, strides=2, activation="elu")
    assert y.shape == (0, 6, 6, 4)
    dx, dk, db = tape.gradient(y, [x, kernel, bias])
    assert dx.shape == (0, 3, 3, 2)
    np.testing.assert_array_equal(dk, np.zeros((3, 3, 4, 2)))
    np.testing.assert_array_equal(db, np.zeros((4,)))


def test_stride_larger_than_kernel_leaves_bias_only_positions():
    """With stride 3 and a 2x2 kernel, a third of the rows receive no tap: act(bias) there."""
    x, kernel, bias = random((1, 2, 2, 1), tf.float32), random((2, 2, 2, 1), tf.float32), \
        random((2,), tf.float32)
    y = fl.ops.fused_conv2d_transpose(x, kernel, bias, strides=3, padding="valid",
                                      activation="tanh")
    assert y.shape == (1, 6, 6, 2)
    assert_close(y[0, 2, 2], tf.tanh(bias))
    layer = keras_layer(True, kernel, bias, (3, 3), "valid", (1, 1), "tanh")
    assert_close(y, layer(x), rtol=1e-4)


@pytest.mark.parametrize("activation", NAMES)
def test_gradient_numerically(activation):
    """Theoretical vs numerical Jacobians in float64 for x, kernel and bias."""
    x = random((1, 2, 3, 2), tf.float64, 2.0)
    kernel = random((3, 3, 3, 2), tf.float64)
    bias = random((3,), tf.float64)
    theoretical, numerical = tf.test.compute_gradient(
        lambda x, k, b: fl.ops.fused_conv2d_transpose(
            x, k, b, strides=(2, 1), padding="same", output_padding=(1, 0),
            activation=activation),
        [x, kernel, bias])
    for t, n in zip(theoretical, numerical):
        np.testing.assert_allclose(t, n, atol=1e-5)


GRAD_GEOMETRIES = [  # (x shape, kernel shape, strides, padding, dilation)
    ((2, 4, 4, 3), (4, 4, 5, 3), (2, 2), "same", (1, 1)),
    ((1, 3, 5, 4), (3, 2, 3, 4), (3, 2), "valid", (1, 1)),
    ((2, 5, 5, 2), (3, 3, 3, 2), (1, 1), "same", (2, 2)),
]


@pytest.mark.parametrize("activation", NAMES)
@pytest.mark.parametrize("geometry", GRAD_GEOMETRIES)
def test_gradient_matches_stock_autodiff(activation, geometry):
    x_shape, k_shape, strides, padding, dilation = geometry
    x, kernel, bias = random(x_shape, tf.float32, 2.0), random(k_shape, tf.float32, 0.5), \
        random(k_shape[2:3], tf.float32)
    y = fused(True, x, kernel, bias, strides, padding, dilation, activation)
    upstream = random(y.shape, tf.float32)

    def grads(fn):
        with tf.GradientTape() as tape:
            tape.watch([x, kernel, bias])
            loss = tf.reduce_sum(fn() * upstream)
        return tape.gradient(loss, [x, kernel, bias])

    expected = grads(lambda: stock_composition(True, x, kernel, bias, strides, padding, dilation,
                                               activation, output_shape=y.shape))
    actual = grads(lambda: fused(True, x, kernel, bias, strides, padding, dilation, activation))
    for a, e in zip(actual, expected):
        assert_close(a, e, rtol=1e-4)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("use_bias", [True, False])
def test_gradient_dtypes_match_float64_autodiff(dtype, use_bias):
    x, kernel = random((2, 3, 4, 3), dtype, 2.0), random((3, 3, 5, 3), dtype, 0.5)
    bias = random((5,), dtype) if use_bias else None
    upstream = random((2, 6, 8, 5), dtype)

    def grads(fn, dt):
        xs = [tf.cast(v, dt) for v in (x, kernel) + ((bias,) if use_bias else ())]
        with tf.GradientTape() as tape:
            tape.watch(xs)
            y = fn(xs[0], xs[1], xs[2] if use_bias else None)
            loss = tf.reduce_sum(y * tf.cast(upstream, dt))
        return tape.gradient(loss, xs)

    expected = grads(lambda x, k, b: stock_composition(True, x, k, b, (2, 2), "same", (1, 1),
                                                       "silu", output_shape=(2, 6, 8, 5)),
                     tf.float64)
    actual = grads(lambda x, k, b: fl.ops.fused_conv2d_transpose(x, k, b, activation="silu"),
                   dtype)
    for a, e in zip(actual, expected):
        assert a.dtype == dtype
        assert_close(a, e, dtype, rtol=None if dtype != tf.float32 else 1e-4)


def test_tf_function_with_unknown_batch_and_size():
    kernel, bias = random((3, 3, 4, 2), tf.float32), random((4,), tf.float32)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 2], tf.float32)])
    def f(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = fl.ops.fused_conv2d_transpose(x, kernel, bias, activation="gelu")
            loss = tf.reduce_sum(y)
        return y, tape.gradient(loss, x)

    for shape in [(1, 3, 3, 2), (2, 1, 4, 2), (0, 2, 2, 2)]:
        x = random(shape, tf.float32)
        y, dx = f(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y_ref = stock_composition(True, x, kernel, bias, (2, 2), "same", (1, 1), "gelu",
                                      output_shape=y.shape)
            loss_ref = tf.reduce_sum(y_ref)
        assert_close(y, y_ref, rtol=1e-4)
        assert dx.shape == x.shape  # stock's gradient of an empty batch has the wrong shape
        if shape[0]:
            assert_close(dx, tape.gradient(loss_ref, x), rtol=1e-4)


def test_static_output_shape_at_trace_time():
    @tf.function(input_signature=[tf.TensorSpec([None, 5, 7, 2], tf.float32)])
    def f(x):
        y = fl.ops.fused_conv2d_transpose(x, tf.zeros((4, 3, 6, 2)), strides=(3, 2),
                                          padding="valid", output_padding=(2, 1))
        assert y.shape.as_list() == [None, 18, 16, 6]
        return y

    f.get_concrete_function()


class TestErrors:
    def call(self, x_shape=(1, 4, 4, 2), k_shape=(3, 3, 5, 2), **kwargs):
        return fl.ops.fused_conv2d_transpose(tf.ones(x_shape), tf.ones(k_shape), **kwargs)

    def test_rank3_input_raises(self):
        with pytest.raises(tf.errors.InvalidArgumentError, match="x must have rank 4"):
            self.call(x_shape=(4, 4, 2))

    def test_kernel_rank(self):
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match=r"kernel must have rank 4 \[kh, kw, filters, in_channels\]"):
            self.call(k_shape=(3, 3, 2))

    def test_channel_mismatch(self):
        with pytest.raises(tf.errors.InvalidArgumentError, match="in_channels = x's channels 2"):
            self.call(k_shape=(3, 3, 2, 5))

    def test_bias_shape(self):
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"bias must have shape \[filters\] = \[5\]"):
            self.call(bias=tf.ones((4,)))

    def test_zero_stride(self):
        with pytest.raises(tf.errors.InvalidArgumentError, match="strides must be >= 1"):
            self.call(strides=(0, 1))

    def test_zero_dilation(self):
        with pytest.raises(tf.errors.InvalidArgumentError, match="dilations must be >= 1"):
            self.call(strides=1, dilation_rate=0)

    def test_stride_with_dilation(self):
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match="strides > 1 is not supported together with dilations > 1"):
            self.call(strides=2, dilation_rate=2)

    @pytest.mark.parametrize("output_padding", [2, (0, 3), -1])
    def test_output_padding_not_below_stride(self, output_padding):
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match="output_padding must be >= 0 and strictly less than strides"):
            self.call(strides=2, output_padding=output_padding)

    def test_same_even_kernel_zero_output_padding(self):
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match="even dilated kernel height .4. gives an output height of 6"):
            self.call(k_shape=(4, 3, 5, 2), strides=2, padding="same", output_padding=0)

    def test_zero_spatial_input(self):
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match="x's spatial dimensions must be >= 1, got width 0"):
            self.call(x_shape=(1, 4, 0, 2))

    def test_zero_kernel_size(self):
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match="kernel's spatial dimensions must be >= 1"):
            self.call(k_shape=(0, 3, 5, 2))

    def test_output_size_overflow(self):
        with pytest.raises(tf.errors.InvalidArgumentError, match="overflows int64"):
            self.call(x_shape=(2**31, 2**15, 2**15, 0), k_shape=(3, 3, 5, 0))

    def test_bad_padding(self):
        with pytest.raises(ValueError, match="padding must be 'valid' or 'same', got 'full'"):
            self.call(padding="full")

    def test_bad_strides_form(self):
        with pytest.raises(ValueError, match="strides must be an int or a pair of ints"):
            self.call(strides=(1, 2, 3))

    def test_dtype_mismatch(self):
        with pytest.raises(TypeError, match="kernel must have the input's dtype float32"):
            fl.ops.fused_conv2d_transpose(tf.ones((1, 2, 2, 1)), tf.ones((2, 2, 1, 1), tf.float64))

    def test_shape_function_rejects_at_trace_time(self):
        @tf.function(input_signature=[tf.TensorSpec([None, 4, 4, 3]), tf.TensorSpec([3, 3, 5, 2])])
        def f(x, k):
            return fl.ops.fused_conv2d_transpose(x, k)

        with pytest.raises(ValueError, match="in_channels = x's channels 3"):
            f.get_concrete_function()

    def test_shape_function_rejects_bad_output_padding(self):
        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 2])])
        def f(x):
            return fl.ops.fused_conv2d_transpose(x, tf.ones((4, 4, 5, 2)), output_padding=0)

        with pytest.raises(ValueError, match="inconsistent with the input"):
            f.get_concrete_function()

    def test_grad_op_checks_dy(self):
        with pytest.raises(tf.errors.InvalidArgumentError, match="dy must have the forward"):
            gen_ops.fused_layers_fused_conv2d_transpose_grad(
                dy=tf.ones((1, 8, 7, 5)), x=tf.ones((1, 4, 4, 2)), kernel=tf.ones((3, 3, 5, 2)),
                y=tf.ones((1, 8, 8, 5)), preactivation=tf.ones((0,)), strides=[2, 2],
                padding="same")

    def test_grad_op_checks_preactivation(self):
        with pytest.raises(tf.errors.InvalidArgumentError, match="preactivation must have"):
            gen_ops.fused_layers_fused_conv2d_transpose_grad(
                dy=tf.ones((1, 8, 8, 5)), x=tf.ones((1, 4, 4, 2)), kernel=tf.ones((3, 3, 5, 2)),
                y=tf.ones((1, 8, 8, 5)), preactivation=tf.ones((0,)), strides=[2, 2],
                padding="same", activation="gelu")

    def test_op_rejects_output_padding_length(self):
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match="output_padding must be empty .None. or have 2 values"):
            gen_ops.fused_layers_fused_conv2d_transpose(
                x=tf.ones((1, 2, 2, 1)), kernel=tf.ones((1, 1, 1, 1)), bias=[],
                output_padding=[0])


class TestLayer:
    def test_builds_lazily_and_matches_keras(self):
        layer = fl.Conv2DTranspose(5, 3, strides=2, padding="same", activation="relu")
        assert not layer.built and layer.kernel is None
        x = random((2, 4, 3, 3), tf.float32)
        y = layer(x)
        assert layer.built and layer.kernel.shape == (3, 3, 5, 3) and layer.bias.shape == (5,)
        assert layer.name == "conv2d_transpose"
        stock = keras_layer(True, layer.kernel, layer.bias, (2, 2), "same", (1, 1), "relu")
        assert_close(y, stock(x), rtol=1e-4)
        assert len(layer.trainable_variables) == 2

    @pytest.mark.parametrize("output_padding", [None, (1, 0)])
    def test_channels_first_matches_keras(self, output_padding):
        layer = fl.Conv2DTranspose(4, (3, 2), strides=2, padding="valid",
                                   output_padding=output_padding, data_format="channels_first",
                                   activation="elu")
        x = random((2, 3, 5, 4), tf.float32)
        y = layer(x)
        stock = keras_layer(True, layer.kernel, layer.bias, (2, 2), "valid", (1, 1), "elu",
                            output_padding, data_format="channels_first")
        assert y.shape == stock(x).shape
        assert_close(y, stock(x), rtol=1e-4)

    def test_rejects_other_channel_count_naming_the_layer(self):
        layer = fl.Conv2DTranspose(4, 3, name="decoder")
        layer(tf.ones((1, 3, 3, 2)))
        with pytest.raises(ValueError, match="decoder: expected inputs with 2 channels"):
            layer(tf.ones((1, 3, 3, 5)))

    def test_reuse_shares_weights(self):
        layer = fl.Conv2DTranspose(2, 2, strides=2)
        a, b = layer(tf.ones((1, 2, 2, 1))), layer(tf.ones((1, 2, 2, 1)))
        np.testing.assert_array_equal(a, b)
        assert len(layer.variables) == 2

    @pytest.mark.parametrize("kwargs,match", [
        (dict(filters=0, kernel_size=3), "filters must be a positive integer"),
        (dict(filters=2, kernel_size=(3, 0)), "kernel_size must be >= 1"),
        (dict(filters=2, kernel_size=3, strides=2, output_padding=2), "strictly less than strides"),
        (dict(filters=2, kernel_size=3, strides=2, dilation_rate=2), "strides > 1 is not supported"),
        (dict(filters=2, kernel_size=3, padding="causal"), "padding must be 'valid' or 'same'"),
        (dict(filters=2, kernel_size=3, data_format="NHWC"), "data_format must be"),
        (dict(filters=2, kernel_size=3, activation="mish"), "Unsupported activation"),
    ])
    def test_constructor_errors(self, kwargs, match):
        with pytest.raises(ValueError, match=match):
            fl.Conv2DTranspose(**kwargs)

    def test_config_round_trip_and_regularizer_loss(self):
        layer = fl.Conv2DTranspose(3, 2, strides=2, output_padding=1, activation="leaky_relu",
                                   kernel_regularizer=keras.regularizers.L2(0.1))
        layer(tf.ones((1, 2, 2, 1)))
        config = layer.get_config()
        assert config["output_padding"] == (1, 1) and config["strides"] == (2, 2)
        clone = fl.Conv2DTranspose.from_config(config)
        assert clone.get_config() == config
        assert_close(layer.losses[0], 0.1 * tf.reduce_sum(layer.kernel ** 2))
