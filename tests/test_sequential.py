"""fl.Sequential, fl.Flatten and fl.Reshape against stock Keras; build, config, trainable, losses."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import fusedlayers as fl
from conftest import assert_close


def fused_and_stock():
    fused = fl.Sequential([
        fl.Reshape((3, 4)),
        fl.Sequential([fl.Dense(5, activation="gelu"), fl.Flatten()]),
        fl.Dense(2, activation="tanh"),
    ])
    stock = keras.Sequential([
        keras.layers.Reshape((3, 4)),
        keras.layers.Dense(5, activation="gelu"),
        keras.layers.Flatten(),
        keras.layers.Dense(2, activation="tanh"),
    ])
    return fused, stock


def dense_weights(fused):
    """The fused model's kernels and biases in the order of the stock model's weights."""
    dense = [fused.layers[1].layers[0], fused.layers[2]]
    return [w for layer in dense for w in (layer.kernel, layer.bias)]


def test_matches_keras_sequential_forward_and_gradient():
    fused, stock = fused_and_stock()
    x = tf.random.normal((6, 12))
    fused(x)
    stock(x)
    for variable, weight in zip(dense_weights(fused), stock.weights):
        weight.assign(variable)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y, expected = fused(x), stock(x)
    assert_close(y, expected)
    assert_close(tape.gradient(y, x), tape.gradient(expected, x))
    for variable, weight in zip(dense_weights(fused), stock.trainable_weights):
        assert_close(tape.gradient(y, variable), tape.gradient(expected, weight.value))


def test_lazy_nested_and_explicit_build():
    fused, _ = fused_and_stock()
    assert not fused.variables and not fused.built
    fused.build((None, 12))
    assert fused.built
    inner = fused.layers[1]
    assert isinstance(inner, fl.Sequential) and inner.built
    assert inner.layers[0].kernel.shape == (4, 5) and fused.layers[2].kernel.shape == (15, 2)
    assert len(fused.variables) == 4 and len(fused.submodules) == 5


def test_first_call_inside_tf_function_with_unknown_batch():
    fused, _ = fused_and_stock()
    call = tf.function(fused, input_signature=[tf.TensorSpec([None, 12])])
    for batch in (1, 4, 0):
        y = call(tf.ones((batch, 12)))
        assert y.shape == (batch, 2)
    assert call.get_concrete_function().structured_outputs.shape.as_list() == [None, 2]
    assert len(fused.variables) == 4


def test_config_round_trip_and_repr():
    fused, _ = fused_and_stock()
    config = fused.get_config()
    clone = fl.Sequential.from_config(config)
    assert clone.get_config() == config
    assert [type(layer) for layer in clone.layers] == [fl.Reshape, fl.Sequential, fl.Dense]
    assert repr(clone) == repr(fused) == (
        "Sequential([Reshape(target_shape=(3, 4)), Sequential([Dense(units=5, "
        "activation='gelu'), Flatten()], name='sequential'), Dense(units=2, activation='tanh')], "
        "name='sequential')"
    )
    assert repr(fl.Sequential([fl.Dense(1)], trainable=False, name="frozen")) == (
        "Sequential([Dense(trainable=False, units=1)], name='frozen', trainable=False)")
    with pytest.raises(ValueError, match="cannot deserialize.*Unknown"):
        fl.Sequential.from_config({"layers": [{"class_name": "Unknown", "config": {}}]})


def test_not_trainable_propagates_to_children():
    frozen = fl.Sequential([fl.Dense(3), fl.Sequential([fl.Dense(2)])], trainable=False)
    frozen(tf.ones((1, 4)))
    assert frozen.trainable_variables == () and len(frozen.variables) == 4
    with tf.GradientTape() as tape:
        y = frozen(tf.ones((1, 4)))
    assert tape.watched_variables() == ()
    assert_close(y, tf.ones((1, 4)) @ frozen.layers[0].kernel @ frozen.layers[1].layers[0].kernel)
    with pytest.raises(ValueError, match="trainable cannot change after the layer is built"):
        frozen.trainable = True

    before_build = fl.Sequential([fl.Dense(3)])
    before_build.trainable = False
    before_build(tf.ones((1, 4)))
    assert before_build.trainable_variables == ()


def test_losses_of_nested_layers_counted_once():
    shared = fl.Dense(2, kernel_regularizer=keras.regularizers.L2(0.5), kernel_initializer="ones")
    outer = fl.Sequential([
        fl.Sequential([fl.Dense(2, bias_regularizer="l1", bias_initializer="ones"), shared]),
        shared,
    ])
    outer(tf.ones((1, 2)))
    assert len(outer.losses) == 2
    assert_close(tf.add_n(outer.losses), 0.5 * 4.0 + 0.01 * 2.0)


@pytest.mark.parametrize("shape", [(2, 3, 4), (2, 5), (3, 1, 1, 2), (0, 4, 2)])
def test_flatten_matches_keras(shape):
    x = tf.random.normal(shape)
    assert_close(fl.Flatten()(x), keras.layers.Flatten()(x))
    x64 = tf.cast(x, tf.float64)
    assert fl.Flatten()(x64).dtype == tf.float64  # moves data, never casts


def test_flatten_unknown_inner_dimensions():
    call = tf.function(fl.Flatten(), input_signature=[tf.TensorSpec([None, None, 3])])
    assert call(tf.ones((2, 4, 3))).shape == (2, 12)
    assert call(tf.ones((0, 4, 3))).shape == (0, 12)


@pytest.mark.parametrize("target", [(6, 2), (-1, 4), (2, 3, 2), (12,)])
def test_reshape_matches_keras(target):
    x = tf.random.normal((3, 4, 3))
    assert_close(fl.Reshape(target)(x), keras.layers.Reshape(target)(x))


class TestErrors:
    def test_sequential_holds_layers_only(self):
        with pytest.raises(TypeError, match="holds fusedlayers layers.*got function"):
            fl.Sequential([tf.nn.relu])

    def test_add_after_build(self):
        model = fl.Sequential([fl.Dense(2)])
        model(tf.ones((1, 2)))
        with pytest.raises(ValueError, match=r"cannot add Dense\(units=3\) after"):
            model.add(fl.Dense(3))

    @pytest.mark.parametrize("target", [(0, 2), (-1, -1), (2.5,), "12", (True,), (-2, 3)])
    def test_reshape_target(self, target):
        with pytest.raises(ValueError, match="target_shape must be a tuple of positive integers"):
            fl.Reshape(target)

    def test_reshape_size_mismatch(self):
        with pytest.raises(ValueError, match=r"cannot reshape examples of shape \(4, 3\) \(12 "
                                             r"values\) to target_shape \(5, -1\)"):
            fl.Reshape((5, -1))(tf.ones((2, 4, 3)))

    def test_flatten_unknown_rank(self):
        call = tf.function(fl.Flatten(), input_signature=[tf.TensorSpec(None)])
        with pytest.raises(ValueError, match="the input's rank must be known"):
            call.get_concrete_function()

    def test_layer_trainable_after_build(self):
        layer = fl.Dense(2)
        layer(tf.ones((1, 2)))
        with pytest.raises(ValueError, match="dense: trainable cannot change.*trainable=False"):
            layer.trainable = False
        np.testing.assert_equal(layer.trainable, True)
