"""fl.Dense against keras.layers.Dense: numerics, gradients, lazy build, arguments, errors."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import fusedlayers as fl
from conftest import FLOAT_DTYPES, assert_close
from fusedlayers.activations import NAMES

KERAS_ACTIVATION = {"gelu_tanh": lambda z: keras.activations.gelu(z, approximate=True)}
SHAPES = [(1, 1), (5, 13), (3, 4, 7), (2, 3, 4, 5), (0, 6)]


def stock_dense(units, activation, dtype, input_shape, use_bias=True):
    layer = keras.layers.Dense(units, activation=KERAS_ACTIVATION.get(activation, activation),
                               use_bias=use_bias, dtype=dtype.name,
                               bias_initializer="random_uniform")
    layer.build(input_shape)
    return layer


def twin_layers(units, activation, dtype, input_shape, use_bias=True):
    """A fused and a stock Dense holding the same weights."""
    stock = stock_dense(units, activation, dtype, input_shape, use_bias)
    fused = fl.Dense(units, activation=activation, use_bias=use_bias, dtype=dtype)
    fused.build(input_shape)
    fused.kernel.assign(stock.kernel.value)
    if use_bias:
        fused.bias.assign(stock.bias.value)
    return fused, stock


@pytest.mark.parametrize("activation", NAMES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_matches_keras_dense(activation, dtype, shape):
    units = 1 if shape == (1, 1) else 6
    fused, stock = twin_layers(units, activation, dtype, shape)
    x = tf.cast(np.random.uniform(-2, 2, size=shape), dtype)
    y = fused(x)
    assert y.dtype == dtype and y.shape == stock.compute_output_shape(shape)
    if dtype in (tf.float16, tf.bfloat16):
        # Stock 16-bit layers round between matmul, bias and activation, where ours
        # accumulates in float32: compare both against a float64 stock twin.
        wide = stock_dense(units, activation, tf.float64, shape)
        wide.set_weights([w.astype(np.float64) for w in stock.get_weights()])
        stock, x = wide, tf.cast(x, tf.float64)
    assert_close(y, stock(x), dtype)


@pytest.mark.parametrize("activation", NAMES)
def test_gradients_match_keras_dense(activation):
    fused, stock = twin_layers(5, activation, tf.float32, (4, 7))
    x = tf.random.normal((4, 7))

    def grads(layer, weights):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(tf.square(layer(x)))
        return tape.gradient(loss, [x] + weights)

    actual = grads(fused, [fused.kernel, fused.bias])
    expected = grads(stock, [stock.kernel.value, stock.bias.value])
    for a, e in zip(actual, expected):
        assert_close(a, e, rtol=2e-5)


def test_builds_lazily_with_named_variables():
    layer = fl.Dense(3, name="head")
    assert not layer.built and layer.variables == ()
    layer(tf.ones((2, 5)))
    assert layer.built
    assert layer.kernel.shape == (5, 3) and layer.bias.shape == (3,)
    assert layer.kernel.name == "head/kernel:0" and layer.bias.name == "head/bias:0"
    assert {v.name for v in layer.trainable_variables} == {"head/kernel:0", "head/bias:0"}


def test_explicit_build_then_call():
    layer = fl.Dense(4, use_bias=False)
    layer.build((None, 9))
    assert layer.bias is None and layer.kernel.shape == (9, 4)
    assert layer(tf.ones((3, 9))).shape == (3, 4)


def test_same_instance_shares_weights():
    layer = fl.Dense(4)
    a, b = tf.random.normal((2, 3)), tf.random.normal((5, 3))
    assert_close(layer(a), a @ layer.kernel + layer.bias)
    assert_close(layer(b), b @ layer.kernel + layer.bias)
    assert len(layer.variables) == 2


def test_inputs_that_are_not_tensors_are_converted():
    # Tensors pass through __call__ unconverted; everything else goes through
    # tf.convert_to_tensor, and gives what the same values as a tensor give.
    layer = fl.Dense(3, activation="tanh")
    layer.build((None, 4))
    values = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    expected = tf.tanh(values @ layer.kernel + layer.bias)
    for inputs in (values, values.tolist(), tf.Variable(values)):
        assert_close(layer(inputs), expected)
    with pytest.raises(TypeError, match="x must be one of"):
        layer(np.ones((2, 4), np.int32))


def test_first_call_inside_tf_function_with_unknown_batch():
    layer = fl.Dense(3, activation="relu")

    @tf.function(input_signature=[tf.TensorSpec([None, 4])])
    def f(x):
        return layer(x)

    for batch in (2, 7):
        x = tf.random.normal((batch, 4))
        assert_close(f(x), tf.nn.relu(x @ layer.kernel + layer.bias))
    assert len(layer.variables) == 2


def test_initializers_regularizers_constraints():
    layer = fl.Dense(3, kernel_initializer="ones", bias_initializer=keras.initializers.Constant(2.0),
                     kernel_regularizer=keras.regularizers.L2(0.5), bias_regularizer="l1",
                     activity_regularizer=keras.regularizers.L1(0.1),
                     kernel_constraint=keras.constraints.NonNeg())
    y = layer(tf.ones((1, 2)))
    np.testing.assert_array_equal(layer.kernel.numpy(), np.ones((2, 3)))
    np.testing.assert_array_equal(layer.bias.numpy(), np.full((3,), 2.0))
    kernel_loss, bias_loss, activity_loss = layer.losses
    assert_close(kernel_loss, 0.5 * 6.0)
    assert_close(bias_loss, 0.01 * 6.0)
    assert_close(activity_loss, 0.1 * tf.reduce_sum(tf.abs(y)))
    layer.kernel.assign(-tf.ones((2, 3)))
    layer.apply_constraints()
    np.testing.assert_array_equal(layer.kernel.numpy(), np.zeros((2, 3)))


def test_not_trainable():
    layer = fl.Dense(2, trainable=False)
    layer(tf.ones((1, 2)))
    assert layer.trainable_variables == () and len(layer.variables) == 2


def test_config_round_trip_and_repr():
    import functools

    act = functools.partial(keras.activations.leaky_relu, negative_slope=0.1)
    layer = fl.Dense(7, activation=act, use_bias=False, kernel_regularizer="l2", name="d")
    clone = fl.Dense.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    assert clone.activation == fl.activations.Activation("leaky_relu", 0.1)
    assert "Dense(" in repr(layer) and "units=7" in repr(layer)


def test_mixed_policy_keeps_float32_variables():
    layer = fl.Dense(4, dtype="mixed_bfloat16")
    y = layer(tf.random.normal((3, 5)))
    assert layer.kernel.dtype == tf.float32 and y.dtype == tf.bfloat16


class TestErrors:
    def test_units(self):
        for units in (0, -1, 2.5, True):
            with pytest.raises(ValueError, match="units must be a positive integer"):
                fl.Dense(units)

    def test_activation(self):
        with pytest.raises(ValueError, match="Unsupported activation 'mish'"):
            fl.Dense(2, activation="mish")

    def test_dtype(self):
        with pytest.raises(TypeError, match="dtype must be floating"):
            fl.Dense(2, dtype="int32")

    def test_input_depth_changes_after_build(self):
        layer = fl.Dense(2, name="proj")
        layer(tf.ones((1, 3)))
        with pytest.raises(ValueError, match=r"proj: expected inputs with last dimension 3, got"):
            layer(tf.ones((1, 4)))

    def test_unknown_last_dimension(self):
        layer = fl.Dense(2)
        with pytest.raises(ValueError, match="last dimension must be known"):
            layer.build((None, None))
