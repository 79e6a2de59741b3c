"""fl.ops.fused_conv2d and fl.Conv2D against keras.layers.Conv2D and tf.nn.conv2d."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import fusedlayers as fl
from conftest import FLOAT_DTYPES, assert_close
from conv_reference import case_inputs, fused, grid, keras_layer, random, stock_composition
from fusedlayers._loader import gen_ops
from fusedlayers.activations import NAMES

GRID = grid(transpose=False)


@pytest.mark.parametrize("index,case", list(enumerate(GRID)),
                         ids=[f"k{c[0][0]}s{c[1][0]}{c[2]}d{c[4][0]}" for c in GRID])
def test_grid_matches_keras(index, case):
    _, strides, padding, _, dilation = case
    x, kernel, bias, activation = case_inputs(index, case, transpose=False)
    layer = keras_layer(False, kernel, bias, strides, padding, dilation, activation)
    assert_close(fused(False, x, kernel, bias, strides, padding, dilation, activation), layer(x),
                 rtol=1e-4)


SHAPES = [  # (x shape, kernel shape [kh, kw, in, filters], strides, padding, dilation)
    ((2, 8, 8, 3), (4, 4, 3, 5), 2, "same", 1),
    ((1, 6, 7, 2), (3, 2, 2, 3), (2, 3), "valid", 1),
    ((2, 9, 9, 1), (3, 3, 1, 4), 1, "same", (2, 1)),
]


@pytest.mark.parametrize("activation", NAMES)
@pytest.mark.parametrize("x_shape,k_shape,strides,padding,dilation", SHAPES)
def test_every_activation_matches_keras(activation, x_shape, k_shape, strides, padding, dilation):
    x, kernel, bias = random(x_shape, tf.float32, 2.0), random(k_shape, tf.float32, 0.5), \
        random(k_shape[3:], tf.float32)
    layer = keras_layer(False, kernel, bias, strides, padding, dilation, activation)
    assert_close(fused(False, x, kernel, bias, strides, padding, dilation, activation), layer(x),
                 rtol=1e-4)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("activation", ["linear", "relu", "gelu", "tanh"])
def test_dtypes_match_float64_reference(dtype, activation):
    x, kernel, bias = random((2, 7, 6, 3), dtype, 2.0), random((3, 3, 3, 6), dtype, 0.5), \
        random((6,), dtype)
    actual = fl.ops.fused_conv2d(x, kernel, bias, strides=2, padding="same", activation=activation)
    cast = [tf.cast(v, tf.float64) for v in (x, kernel, bias)]
    expected = stock_composition(False, *cast, (2, 2), "same", (1, 1), activation)
    assert actual.dtype == dtype
    assert_close(actual, expected, dtype)


@pytest.mark.parametrize("transpose", [False, True], ids=["conv2d", "conv2d_transpose"])
@pytest.mark.parametrize("x_shape,filters", [
    ((0, 2**31 - 1, 1, 0), 2),  # a huge empty batch: no work per position
    ((2, 5, 4, 3), 0),  # no filters: x is real, every gradient zero
], ids=["huge-empty-batch", "no-filters"])
def test_empty_output_gradients_are_zero(transpose, x_shape, filters):
    in_c = x_shape[3]
    kernel = random((1, 1) + ((filters, in_c) if transpose else (in_c, filters)), tf.float32)
    bias = random((filters,), tf.float32)
    x = random(x_shape, tf.float32) if 0 not in x_shape else tf.zeros(x_shape)
    op = fl.ops.fused_conv2d_transpose if transpose else fl.ops.fused_conv2d
    with tf.GradientTape() as tape:
        tape.watch([x, kernel, bias])
        y = op(x, kernel, bias, strides=(1, 2), padding="valid", activation="gelu")
    assert y.shape.num_elements() == 0
    dx, dk, db = tape.gradient(y, [x, kernel, bias])
    np.testing.assert_array_equal(dx, np.zeros(x_shape))
    np.testing.assert_array_equal(dk, np.zeros(kernel.shape))
    np.testing.assert_array_equal(db, np.zeros((filters,)))


@pytest.mark.parametrize("transpose", [False, True], ids=["conv2d", "conv2d_transpose"])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: d.name)
def test_no_input_channels_is_activation_of_bias(transpose, dtype):
    """An input with no channel: the product has no depth, y = act(bias) at every output
    position and the bias gradient sums dy * act'(bias) over them (tf.reduce_sum of the
    stock activation's gradient)."""
    x, filters = tf.zeros((3, 17, 9, 0), dtype), 4
    kernel = tf.zeros((3, 2) + ((filters, 0) if transpose else (0, filters)), dtype)
    bias = random((filters,), dtype)
    op = fl.ops.fused_conv2d_transpose if transpose else fl.ops.fused_conv2d
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([x, kernel, bias])
        y = op(x, kernel, bias, strides=(2, 1), padding="same", activation="gelu")
    assert y.shape == ((3, 34, 9, filters) if transpose else (3, 9, 9, filters))
    upstream = random(y.shape, dtype)
    dx, dk, db = tape.gradient(y, [x, kernel, bias], output_gradients=upstream)
    z = tf.Variable(tf.broadcast_to(tf.cast(bias, tf.float64), y.shape))
    with tf.GradientTape() as ref_tape:
        expected_y = tf.nn.gelu(z, approximate=False)
    assert_close(y, expected_y, dtype)
    assert dx.shape == x.shape and dk.shape == kernel.shape
    dz = ref_tape.gradient(expected_y, z, output_gradients=tf.cast(upstream, tf.float64))
    assert_close(db, tf.reduce_sum(dz, axis=[0, 1, 2]), dtype)


def test_batch_zero_forward_and_gradient():
    x, kernel, bias = tf.zeros((0, 5, 5, 2)), random((3, 3, 2, 4), tf.float32), \
        random((4,), tf.float32)
    with tf.GradientTape() as tape:
        tape.watch([x, kernel, bias])
        y = fl.ops.fused_conv2d(x, kernel, bias, activation="elu")
    assert y.shape == (0, 3, 3, 4)
    dx, dk, db = tape.gradient(y, [x, kernel, bias])
    assert dx.shape == (0, 5, 5, 2)
    np.testing.assert_array_equal(dk, np.zeros((3, 3, 2, 4)))
    np.testing.assert_array_equal(db, np.zeros((4,)))


@pytest.mark.parametrize("activation", NAMES)
def test_gradient_numerically(activation):
    """Theoretical vs numerical Jacobians in float64 for x, kernel and bias."""
    x = random((2, 4, 3, 2), tf.float64, 2.0)
    kernel = random((3, 2, 2, 3), tf.float64)
    bias = random((3,), tf.float64)
    theoretical, numerical = tf.test.compute_gradient(
        lambda x, k, b: fl.ops.fused_conv2d(x, k, b, strides=(2, 1), padding="same",
                                            activation=activation),
        [x, kernel, bias])
    for t, n in zip(theoretical, numerical):
        np.testing.assert_allclose(t, n, atol=1e-5)


GRAD_GEOMETRIES = [  # (x shape, kernel shape, strides, padding, dilation)
    ((2, 8, 8, 3), (4, 4, 3, 5), (2, 2), "same", (1, 1)),
    ((1, 7, 9, 4), (3, 2, 4, 3), (3, 2), "valid", (1, 1)),
    ((2, 6, 6, 2), (3, 3, 2, 3), (1, 1), "same", (2, 2)),
]


@pytest.mark.parametrize("activation", NAMES)
@pytest.mark.parametrize("geometry", GRAD_GEOMETRIES)
def test_gradient_matches_stock_autodiff(activation, geometry):
    x_shape, k_shape, strides, padding, dilation = geometry
    x, kernel, bias = random(x_shape, tf.float32, 2.0), random(k_shape, tf.float32, 0.5), \
        random(k_shape[3:], tf.float32)
    y = fused(False, x, kernel, bias, strides, padding, dilation, activation)
    upstream = random(y.shape, tf.float32)

    def grads(fn):
        with tf.GradientTape() as tape:
            tape.watch([x, kernel, bias])
            loss = tf.reduce_sum(fn() * upstream)
        return tape.gradient(loss, [x, kernel, bias])

    expected = grads(lambda: stock_composition(False, x, kernel, bias, strides, padding, dilation,
                                               activation))
    actual = grads(lambda: fused(False, x, kernel, bias, strides, padding, dilation, activation))
    for a, e in zip(actual, expected):
        assert_close(a, e, rtol=1e-4)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("use_bias", [True, False])
def test_gradient_dtypes_match_float64_autodiff(dtype, use_bias):
    x, kernel = random((2, 6, 5, 3), dtype, 2.0), random((3, 3, 3, 5), dtype, 0.5)
    bias = random((5,), dtype) if use_bias else None
    upstream = random((2, 3, 3, 5), dtype)

    def grads(fn, dt):
        xs = [tf.cast(v, dt) for v in (x, kernel) + ((bias,) if use_bias else ())]
        with tf.GradientTape() as tape:
            tape.watch(xs)
            y = fn(xs[0], xs[1], xs[2] if use_bias else None)
            loss = tf.reduce_sum(y * tf.cast(upstream, dt))
        return tape.gradient(loss, xs)

    expected = grads(lambda x, k, b: stock_composition(False, x, k, b, (2, 2), "same", (1, 1),
                                                       "selu"), tf.float64)
    actual = grads(lambda x, k, b: fl.ops.fused_conv2d(x, k, b, strides=2, padding="same",
                                                       activation="selu"), dtype)
    for a, e in zip(actual, expected):
        assert a.dtype == dtype
        assert_close(a, e, dtype, rtol=None if dtype != tf.float32 else 1e-4)


def test_tf_function_with_unknown_batch_and_size():
    kernel, bias = random((3, 3, 2, 4), tf.float32), random((4,), tf.float32)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 2], tf.float32)])
    def f(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = fl.ops.fused_conv2d(x, kernel, bias, padding="same", activation="softplus")
            loss = tf.reduce_sum(y)
        return y, tape.gradient(loss, x)

    for shape in [(1, 3, 3, 2), (2, 1, 6, 2), (0, 4, 4, 2)]:
        x = random(shape, tf.float32)
        y, dx = f(x)
        assert y.shape == shape[:3] + (4,) and dx.shape == shape
        if not shape[0]:
            continue  # stock tf.nn.conv2d returns an empty batch with the input's shape
        with tf.GradientTape() as tape:
            tape.watch(x)
            y_ref = stock_composition(False, x, kernel, bias, (1, 1), "same", (1, 1), "softplus")
            loss_ref = tf.reduce_sum(y_ref)
        assert_close(y, y_ref, rtol=1e-4)
        assert_close(dx, tape.gradient(loss_ref, x), rtol=1e-4)


def test_static_output_shape_at_trace_time():
    @tf.function(input_signature=[tf.TensorSpec([None, 9, 8, 2], tf.float32)])
    def f(x):
        y = fl.ops.fused_conv2d(x, tf.zeros((4, 3, 2, 6)), strides=(2, 3), padding="valid")
        assert y.shape.as_list() == [None, 3, 2, 6]
        z = fl.ops.fused_conv2d(x, tf.zeros((4, 3, 2, 6)), strides=(2, 3), padding="same")
        assert z.shape.as_list() == [None, 5, 3, 6]
        return y

    f.get_concrete_function()


class TestErrors:
    def call(self, x_shape=(1, 5, 5, 2), k_shape=(3, 3, 2, 4), **kwargs):
        return fl.ops.fused_conv2d(tf.ones(x_shape), tf.ones(k_shape), **kwargs)

    def test_rank3_input_raises_instead_of_aborting(self):
        with pytest.raises(tf.errors.InvalidArgumentError, match="x must have rank 4"):
            self.call(x_shape=(5, 5, 2))

    def test_kernel_rank(self):
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match=r"kernel must have rank 4 \[kh, kw, in_channels, filters\]"):
            self.call(k_shape=(3, 3, 2))

    def test_channel_mismatch(self):
        with pytest.raises(tf.errors.InvalidArgumentError, match="in_channels = x's channels 2"):
            self.call(k_shape=(3, 3, 3, 4))

    def test_bias_shape(self):
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"bias must have shape \[filters\] = \[4\]"):
            self.call(bias=tf.ones((2,)))

    def test_kernel_larger_than_input_with_valid_padding(self):
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match=r"padding 'valid' needs the input width \(5\) to be at least the "
                                 r"dilated kernel width \(7\)"):
            self.call(k_shape=(3, 4, 2, 4), dilation_rate=2)

    def test_zero_stride(self):
        with pytest.raises(tf.errors.InvalidArgumentError, match="strides must be >= 1"):
            self.call(strides=(1, -1))

    def test_stride_with_dilation(self):
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match="strides > 1 is not supported together with dilations > 1"):
            self.call(strides=(2, 1), dilation_rate=(1, 2))

    def test_zero_kernel_size(self):
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match="kernel's spatial dimensions must be >= 1, got kernel height 0"):
            self.call(k_shape=(0, 3, 2, 4), padding="same")

    def test_kernel_extent_overflow(self):
        with pytest.raises(tf.errors.InvalidArgumentError, match="overflows int64"):
            self.call(k_shape=(3, 1, 2, 4), dilation_rate=2**62)

    def test_bad_padding(self):
        with pytest.raises(ValueError, match="padding must be 'valid' or 'same', got 'causal'"):
            self.call(padding="causal")

    def test_bad_dilation_form(self):
        with pytest.raises(ValueError, match="dilation_rate must be an int or a pair of ints"):
            self.call(dilation_rate=1.5)

    def test_integer_input(self):
        with pytest.raises(TypeError, match="x must be one of"):
            fl.ops.fused_conv2d(tf.ones((1, 3, 3, 1), tf.int32), tf.ones((1, 1, 1, 1)))

    def test_shape_function_rejects_at_trace_time(self):
        @tf.function(input_signature=[tf.TensorSpec([None, 2, None, 3]), tf.TensorSpec([3, 3, 3, 2])])
        def f(x, k):
            return fl.ops.fused_conv2d(x, k)

        with pytest.raises(ValueError, match="padding 'valid' needs the input height"):
            f.get_concrete_function()

    def test_shape_function_rejects_rank3(self):
        @tf.function(input_signature=[tf.TensorSpec([None, 4, 3])])
        def f(x):
            return fl.ops.fused_conv2d(x, tf.ones((1, 1, 3, 2)))

        with pytest.raises(ValueError, match="x must have rank 4"):
            f.get_concrete_function()

    def test_grad_op_checks_dy(self):
        with pytest.raises(tf.errors.InvalidArgumentError, match="dy must have the forward"):
            gen_ops.fused_layers_fused_conv2d_grad(
                dy=tf.ones((1, 3, 2, 4)), x=tf.ones((1, 5, 5, 2)), kernel=tf.ones((3, 3, 2, 4)),
                y=tf.ones((1, 3, 3, 4)), preactivation=tf.ones((0,)))

    def test_grad_op_checks_y(self):
        with pytest.raises(tf.errors.InvalidArgumentError, match="y must have the forward"):
            gen_ops.fused_layers_fused_conv2d_grad(
                dy=tf.ones((1, 3, 3, 4)), x=tf.ones((1, 5, 5, 2)), kernel=tf.ones((3, 3, 2, 4)),
                y=tf.ones((1, 3, 3, 3)), preactivation=tf.ones((0,)))

    def test_op_rejects_strides_length(self):
        with pytest.raises(tf.errors.InvalidArgumentError, match="strides must have 2 values"):
            gen_ops.fused_layers_fused_conv2d(x=tf.ones((1, 2, 2, 1)), kernel=tf.ones((1, 1, 1, 1)),
                                              bias=[], strides=[1, 1, 1, 1])

    def test_op_rejects_unknown_padding_attr(self):
        with pytest.raises(tf.errors.InvalidArgumentError, match="padding must be 'valid' or 'same'"):
            gen_ops.fused_layers_fused_conv2d(x=tf.ones((1, 2, 2, 1)), kernel=tf.ones((1, 1, 1, 1)),
                                              bias=[], padding="SAME")


class TestLayer:
    def test_builds_lazily_and_matches_keras(self):
        layer = fl.Conv2D(5, 3, strides=2, padding="same", activation="silu")
        assert not layer.built and layer.kernel is None
        x = random((2, 7, 6, 3), tf.float32)
        y = layer(x)
        assert layer.built and layer.kernel.shape == (3, 3, 3, 5) and layer.bias.shape == (5,)
        assert layer.name == "conv2d"
        stock = keras_layer(False, layer.kernel, layer.bias, (2, 2), "same", (1, 1), "silu")
        assert_close(y, stock(x), rtol=1e-4)

    def test_channels_first_matches_keras(self):
        layer = fl.Conv2D(4, (3, 2), dilation_rate=(2, 1), padding="same",
                          data_format="channels_first", activation="relu6")
        x = random((2, 3, 7, 5), tf.float32, 4.0)
        y = layer(x)
        stock = keras_layer(False, layer.kernel, layer.bias, (1, 1), "same", (2, 1), "relu6",
                            data_format="channels_first")
        assert y.shape == (2, 4, 7, 5)
        assert_close(y, stock(x), rtol=1e-4)

    def test_groups_match_keras(self):
        layer = fl.Conv2D(6, 3, groups=3, padding="same", activation="tanh")
        x = random((2, 5, 5, 9), tf.float32)
        y = layer(x)
        assert layer.kernel.shape == (3, 3, 3, 6)
        stock = keras.layers.Conv2D(6, 3, groups=3, padding="same", activation="tanh")
        stock.build(x.shape)
        stock.set_weights([layer.kernel.numpy(), layer.bias.numpy()])
        assert_close(y, stock(x), rtol=1e-4)
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(layer(x) ** 2)
        assert all(g is not None for g in tape.gradient(loss, layer.trainable_variables))

    def test_groups_must_divide_channels(self):
        layer = fl.Conv2D(6, 3, groups=3, name="grouped")
        with pytest.raises(ValueError, match=r"grouped: the input's channels \(4\) must be divisible"):
            layer(tf.ones((1, 5, 5, 4)))

    def test_rejects_other_channel_count_naming_the_layer(self):
        layer = fl.Conv2D(4, 3, name="encoder")
        layer(tf.ones((1, 5, 5, 2)))
        with pytest.raises(ValueError, match="encoder: expected inputs with 2 channels"):
            layer(tf.ones((1, 5, 5, 3)))

    def test_rejects_rank3_input_naming_the_layer(self):
        layer = fl.Conv2D(4, 3, name="encoder")
        with pytest.raises(ValueError, match="encoder: expected a rank-4 input"):
            layer(tf.ones((5, 5, 3)))

    @pytest.mark.parametrize("kwargs,match", [
        (dict(filters=-1, kernel_size=3), "filters must be a positive integer"),
        (dict(filters=2, kernel_size=3, strides=0), "strides must be >= 1"),
        (dict(filters=2, kernel_size=3, strides=2, dilation_rate=2), "strides > 1 is not supported"),
        (dict(filters=3, kernel_size=3, groups=2), "filters must be divisible by groups"),
        (dict(filters=2, kernel_size=3, groups=0), "groups must be a positive integer"),
    ])
    def test_constructor_errors(self, kwargs, match):
        with pytest.raises(ValueError, match=match):
            fl.Conv2D(**kwargs)

    def test_config_round_trip_and_mixed_precision(self):
        layer = fl.Conv2D(3, 2, groups=1, activation="gelu", dtype="mixed_bfloat16")
        y = layer(tf.ones((1, 4, 4, 2)))
        assert y.dtype == tf.bfloat16 and layer.kernel.dtype == tf.float32
        clone = fl.Conv2D.from_config(layer.get_config())
        assert clone.get_config() == layer.get_config()
