"""fl.Module's layer dictionary: create on first use, share after, track, refuse conflicts."""

import functools

import keras
import numpy as np
import pytest
import tensorflow as tf

import fusedlayers as fl
from conftest import assert_close


class Model(fl.Module):
    def __call__(self, x):
        hidden = self.get("hidden", fl.Dense, 5, activation="relu", kernel_regularizer="l2")(x)
        hidden = self.get("shared", fl.Dense, 5, activation="tanh")(hidden)
        hidden = self.get("shared", fl.Dense, 5, activation="tanh")(hidden)
        return self.get("head", fl.Dense, 2)(hidden)


def reference(model, x):
    """The model's function from tf.matmul with its own variables."""
    layers = model.layers
    hidden = tf.nn.relu(x @ layers["hidden"].kernel + layers["hidden"].bias)
    for _ in range(2):
        hidden = tf.tanh(hidden @ layers["shared"].kernel + layers["shared"].bias)
    return hidden @ layers["head"].kernel + layers["head"].bias


def test_creates_on_first_use_and_shares_after():
    model = Model(name="model")
    assert not model.variables and not model.layers
    x = tf.random.normal((4, 3))
    y = model(x)
    assert list(model.layers) == ["hidden", "shared", "head"]
    assert_close(y, reference(model, x))
    assert model.get("shared", fl.Dense, 5, activation="tanh") is model.layers["shared"]
    assert len(model.variables) == 6  # the shared layer counted once
    assert {v.name for v in model.trainable_variables} == {
        f"model/{layer}/{weight}:0" for layer in ("hidden", "shared", "head")
        for weight in ("kernel", "bias")
    }
    assert set(map(id, model.submodules)) == set(map(id, model.layers.values()))


def test_gradients_reach_every_layer_once():
    model = Model()
    x = tf.random.normal((4, 3))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(model(x) ** 2)
    grads = tape.gradient(loss, model.trainable_variables)
    with tf.GradientTape() as tape:
        expected_loss = tf.reduce_sum(reference(model, x) ** 2)
    expected = tape.gradient(expected_loss, model.trainable_variables)
    for g, e in zip(grads, expected):
        assert_close(g, e)


def test_explicit_name_and_non_layer_constructors():
    model = fl.Module(name="m")
    layer = model.get("proj", fl.Dense, 3, name="projection")
    assert layer.name == "projection"
    table = model.get("table", dict, a=1)
    assert table == {"a": 1} and model.get("table", dict, a=1) is model.layers["table"]


def test_layer_arguments_compare_by_configuration():
    model = fl.Module()
    body = model.get("body", fl.Sequential, [fl.Dense(3), fl.Dense(2)])
    assert model.get("body", fl.Sequential, [fl.Dense(3), fl.Dense(2)]) is body
    with pytest.raises(ValueError, match="Sequential"):
        model.get("body", fl.Sequential, [fl.Dense(3), fl.Dense(4)])


def test_keras_objects_and_partials_compare_by_configuration():
    def make(model, scale):
        return model.get(
            "layer", fl.Dense, 2,
            kernel_initializer=keras.initializers.Constant(scale),
            kernel_regularizer=keras.regularizers.L2(scale),
            activation=functools.partial(keras.activations.leaky_relu, negative_slope=scale),
        )

    model = fl.Module()
    assert make(model, 0.5) is make(model, 0.5)
    with pytest.raises(ValueError, match="layer"):
        make(model, 0.25)


def test_losses_collect_regularizers_of_all_layers():
    model = fl.Module()
    model.get("a", fl.Dense, 2, kernel_regularizer=keras.regularizers.L2(0.5))(tf.ones((1, 3)))
    inner = model.get("inner", fl.Sequential, [fl.Dense(2, bias_regularizer="l1",
                                                        bias_initializer="ones")])
    inner(tf.ones((1, 3)))
    kernel = model.layers["a"].kernel
    expected = 0.5 * tf.reduce_sum(kernel ** 2) + 0.01 * 2.0
    assert len(model.losses) == 2
    assert_close(tf.add_n(model.losses), expected)


def test_not_trainable_layer():
    model = fl.Module()
    model.get("frozen", fl.Dense, 2, trainable=False)(tf.ones((1, 3)))
    model.get("live", fl.Dense, 2)(tf.ones((1, 3)))
    assert len(model.variables) == 4
    assert {v.name for v in model.trainable_variables} == {"module/live/kernel:0",
                                                          "module/live/bias:0"}


def test_first_call_inside_tf_function_unknown_batch_and_retrace():
    model = Model()
    call = tf.function(model)
    created = None
    for batch in (3, 5, 1):
        x = tf.random.normal((batch, 4))
        assert_close(call(x), reference(model, x))
        created = created or [v.ref() for v in model.variables]
    assert call.experimental_get_tracing_count() >= 2  # retraced: and created nothing more
    signature_call = tf.function(model, input_signature=[tf.TensorSpec([None, 4])])
    x = tf.random.normal((7, 4))
    assert_close(signature_call(x), reference(model, x))
    assert [v.ref() for v in model.variables] == created and len(created) == 6


class TestErrors:
    def test_other_constructor(self):
        model = fl.Module()
        model.get("layer", fl.Dense, 3)
        with pytest.raises(ValueError, match=r"holds Dense\(3\), but is now asked for Flatten\(\)"):
            model.get("layer", fl.Flatten)

    def test_other_arguments(self):
        model = fl.Module()
        model.get("layer", fl.Dense, 3, activation="relu")
        with pytest.raises(ValueError, match=r"Dense\(3, activation='relu'\).*Dense\(4\)"):
            model.get("layer", fl.Dense, 4)
        with pytest.raises(ValueError, match=r"Dense\(3, activation='tanh'\)"):
            model.get("layer", fl.Dense, 3, activation="tanh")

    def test_conflict_inside_tf_function(self):
        model = fl.Module()

        @tf.function
        def call(x):
            hidden = model.get("layer", fl.Dense, 3)(x)
            return model.get("layer", fl.Dense, 4)(hidden)

        with pytest.raises(ValueError, match="use another name"):
            call(tf.ones((1, 3)))

    def test_name(self):
        with pytest.raises(ValueError, match="must be a Python identifier.*'my layer'"):
            fl.Module().get("my layer", fl.Dense, 3)
        with pytest.raises(ValueError, match="must be a Python identifier.*3"):
            fl.Module().get(3, fl.Dense, 3)

    def test_ctor(self):
        with pytest.raises(TypeError, match="ctor must be callable, got 'dense'"):
            fl.Module().get("layer", "dense")

    def test_array_arguments_compare_by_identity(self):
        model = fl.Module()
        init = np.ones((3, 2), np.float32)
        assert model.get("table", np.asarray, init) is model.get("table", np.asarray, init)
        with pytest.raises(ValueError, match="table"):
            model.get("table", np.asarray, init.copy())
