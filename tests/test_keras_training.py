"""fit / evaluate / predict with fused layers, step by step against the same model with stock layers."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import fusedlayers.keras as flk
from conftest import assert_close


def mlp():
    inputs = keras.Input((12,))
    h = keras.layers.Dense(32, activation="gelu")(inputs)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.Dense(32, activation="silu", kernel_regularizer="l2")(h)
    outputs = keras.layers.Dense(4, activation="softmax")(h)
    return keras.Model(inputs, outputs), np.random.normal(size=(64, 12)).astype("float32"), \
        np.random.randint(0, 4, size=(64,))


def convnet():
    """A small conv classifier: Conv2D down, Conv2DTranspose up, channels_first in the middle."""
    inputs = keras.Input((10, 10, 2))
    h = keras.layers.Conv2D(6, 3, strides=2, padding="same", activation="relu")(inputs)
    h = keras.layers.Conv2DTranspose(4, 3, strides=2, padding="same", activation="elu")(h)
    h = keras.layers.Permute((3, 1, 2))(h)
    h = keras.layers.Conv2D(3, 3, data_format="channels_first", activation="tanh")(h)
    outputs = keras.layers.Dense(4, activation="softmax")(keras.layers.Flatten()(h))
    return keras.Model(inputs, outputs), np.random.normal(size=(64, 10, 10, 2)).astype(
        "float32"), np.random.randint(0, 4, size=(64,))


MODELS = {"mlp": mlp, "convnet": convnet}


def stock_and_fused(build, optimizer="sgd", **compile_kwargs):
    """The stock model and its fuse()d copy, compiled alike, from the same initial weights."""
    stock, x, y = build()
    fused = flk.fuse(stock)
    assert fused.fuse_report.swapped and not fused.fuse_report.kept
    for model in (stock, fused):
        model.compile(keras.optimizers.get({"class_name": optimizer,
                                            "config": {"learning_rate": 0.05}}),
                      "sparse_categorical_crossentropy", metrics=["accuracy"], **compile_kwargs)
    return stock, fused, x, y


@pytest.mark.parametrize("name", MODELS)
def test_losses_over_the_first_steps_match_stock(name):
    stock, fused, x, y = stock_and_fused(MODELS[name], optimizer="adam")
    for step in range(6):
        batch = slice(16 * (step % 4), 16 * (step % 4 + 1))
        stock_loss = stock.train_on_batch(x[batch], y[batch], return_dict=True)["loss"]
        fused_loss = fused.train_on_batch(x[batch], y[batch], return_dict=True)["loss"]
        np.testing.assert_allclose(fused_loss, stock_loss, rtol=1e-4)
    for expected, actual in zip(stock.get_weights(), fused.get_weights()):
        assert_close(actual, expected, rtol=1e-4)


@pytest.mark.parametrize("name", MODELS)
def test_fit_evaluate_predict_match_stock(name):
    stock, fused, x, y = stock_and_fused(MODELS[name])
    histories = [model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0).history
                 for model in (stock, fused)]
    np.testing.assert_allclose(histories[1]["loss"], histories[0]["loss"], rtol=1e-4)
    assert histories[1]["loss"][1] < histories[1]["loss"][0]
    stock_eval = stock.evaluate(x, y, verbose=0, return_dict=True)
    fused_eval = fused.evaluate(x, y, verbose=0, return_dict=True)
    np.testing.assert_allclose(fused_eval["loss"], stock_eval["loss"], rtol=1e-4)
    assert_close(fused.predict(x, verbose=0), stock.predict(x, verbose=0), rtol=1e-4)


def test_mixed_precision_training_matches_stock_loosely():
    keras.config.set_dtype_policy("mixed_float16")
    try:
        stock, fused, x, y = stock_and_fused(mlp)
    finally:
        keras.config.set_dtype_policy("float32")
    assert isinstance(fused.optimizer, keras.optimizers.LossScaleOptimizer)
    assert fused.layers[1].compute_dtype == "float16"
    losses = [model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0).history["loss"]
              for model in (stock, fused)]
    np.testing.assert_allclose(losses[1], losses[0], rtol=2e-2)


def test_gradients_reach_every_weight_with_a_gradient_tape():
    stock, fused, x, y = stock_and_fused(mlp)
    loss_fn = keras.losses.SparseCategoricalCrossentropy()
    grads = []
    for model in (stock, fused):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True)) + tf.add_n(model.losses)
        grads.append(tape.gradient(loss, model.trainable_weights))
    for expected, actual in zip(*grads):
        assert actual is not None
        assert_close(actual, expected, rtol=1e-5)
