"""Mixed precision: float32 variables, low-precision compute, against stock Keras with the policy."""

import keras
import pytest
import tensorflow as tf

import fusedlayers as fl
from conftest import assert_close

POLICIES = ["mixed_bfloat16", "mixed_float16"]


def _compute_dtype(policy):
    return tf.as_dtype(keras.DTypePolicy(policy).compute_dtype)


def _stock_twin(fused, x, policy):
    """A keras.layers.Dense with `fused`'s configuration and weights, under `policy`."""
    stock = keras.layers.Dense(fused.units, activation=fused.activation.name, dtype=policy)
    stock.build(x.shape)
    stock.kernel.assign(fused.kernel)
    stock.bias.assign(fused.bias)
    return stock


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("as_object", [False, True], ids=["name", "DTypePolicy"])
def test_dense_matches_keras_under_policy(policy, as_object):
    fused = fl.Dense(6, activation="gelu", dtype=keras.DTypePolicy(policy) if as_object else policy)
    x = tf.random.normal((5, 7))
    fused(x)
    stock = _stock_twin(fused, x, policy)
    with tf.GradientTape(persistent=True) as tape:
        y, expected = fused(x), stock(x)
        loss, expected_loss = (tf.reduce_sum(tf.cast(v, tf.float32) ** 2) for v in (y, expected))
    compute = _compute_dtype(policy)
    assert y.dtype == expected.dtype == compute
    assert fused.kernel.dtype == fused.bias.dtype == tf.float32
    assert fused.dtype_policy == policy
    assert_close(y, expected, compute)
    for variable, weight in ((fused.kernel, stock.kernel), (fused.bias, stock.bias)):
        grad = tape.gradient(loss, variable)
        assert grad.dtype == tf.float32
        assert_close(grad, tape.gradient(expected_loss, weight.value), compute)


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("kind", ["Conv2D", "Conv2DTranspose"])
def test_conv_matches_keras_under_policy(policy, kind):
    kwargs = dict(filters=5, kernel_size=3, strides=2, padding="same", activation="elu",
                  bias_initializer="random_normal")
    fused, stock = getattr(fl, kind)(**kwargs, dtype=policy), getattr(keras.layers, kind)(
        **kwargs, dtype=policy)
    x = tf.random.normal((2, 7, 6, 3))
    fused(x)
    stock.build(x.shape)
    stock.kernel.assign(fused.kernel)
    stock.bias.assign(fused.bias)
    with tf.GradientTape(persistent=True) as tape:
        y, expected = fused(x), stock(x)
        loss, expected_loss = (tf.reduce_sum(tf.cast(v, tf.float32) ** 2) for v in (y, expected))
    compute = _compute_dtype(policy)
    assert y.dtype == expected.dtype == compute
    assert fused.kernel.dtype == fused.bias.dtype == tf.float32
    assert_close(y, expected, compute)
    for variable, weight in ((fused.kernel, stock.kernel), (fused.bias, stock.bias)):
        grad = tape.gradient(loss, variable)
        assert grad.dtype == tf.float32
        assert_close(grad, tape.gradient(expected_loss, weight.value), compute)


def test_low_precision_compute_keeps_float32_accumulation():
    """A long dot product of small terms: a float32 accumulator keeps its sum exact in the
    bfloat16 result, as the float32 reference rounded to bfloat16."""
    depth = 4096
    x = tf.fill((1, depth), 1.0 / 64)
    fused = fl.Dense(1, use_bias=False, kernel_initializer="ones", dtype="mixed_bfloat16")
    expected = tf.cast(tf.constant([[depth / 64]]), tf.bfloat16)
    assert float(fused(x)[0, 0]) == float(expected[0, 0])


@pytest.mark.parametrize("policy", POLICIES)
def test_global_policy_reaches_sequential_layers(policy):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        model = fl.Sequential([fl.Dense(4, activation="relu"), fl.Flatten(), fl.Dense(2)])
    finally:
        keras.config.set_dtype_policy(previous)
    y = model(tf.random.normal((3, 5)))
    assert y.dtype == _compute_dtype(policy)
    assert {v.dtype for v in model.variables} == {tf.float32}
    assert fl.Sequential.from_config(model.get_config()).layers[0].dtype_policy == policy


def test_training_step_matches_keras_with_loss_scaling():
    policy = "mixed_float16"
    fused = fl.Dense(3, activation="tanh", dtype=policy)
    x, target = tf.random.normal((8, 4)), tf.random.normal((8, 3))
    fused(x)
    stock = _stock_twin(fused, x, policy)
    results = []
    for layer, variables in ((fused, [fused.kernel, fused.bias]), (stock, stock.trainable_weights)):
        optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.5))
        for _ in range(2):
            with tf.GradientTape() as tape:
                y = tf.cast(layer(x), tf.float32)
                loss = optimizer.scale_loss(tf.reduce_mean((y - target) ** 2))
            optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        results.append([tf.convert_to_tensor(v) for v in variables])
    for fused_value, stock_value in zip(*results):
        assert fused_value.dtype == tf.float32
        assert_close(fused_value, stock_value, tf.float16)
