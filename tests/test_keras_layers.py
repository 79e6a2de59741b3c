"""fusedlayers.keras layers against the stock Keras layers: outputs, gradients, weights, config, errors."""

import inspect

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras.src.trainers.trainer import model_supports_jit

import fusedlayers.keras as flk
from conftest import assert_close

# (stock class, fused class, constructor kwargs, input shape); each fused class appears.
CASES = [
    (keras.layers.Dense, flk.Dense, dict(units=6, activation="relu"), (4, 5)),
    (keras.layers.Dense, flk.Dense, dict(units=3, activation="gelu"), (2, 3, 7)),
    (keras.layers.Dense, flk.Dense, dict(units=4, activation="softmax"), (3, 5)),
    (keras.layers.Dense, flk.Dense, dict(units=4, use_bias=False), (3, 5)),
    (keras.layers.Dense, flk.Dense,
     dict(units=4, activation=keras.activations.leaky_relu, bias_initializer="ones"), (3, 5)),
    (keras.layers.Conv2D, flk.Conv2D,
     dict(filters=5, kernel_size=3, strides=2, padding="same", activation="elu"), (2, 9, 8, 3)),
    (keras.layers.Conv2D, flk.Conv2D,
     dict(filters=4, kernel_size=(3, 2), dilation_rate=2, activation="gelu",
          bias_initializer="ones"), (2, 8, 7, 3)),
    # channels_first: the output's width must differ from filters, or stock Keras 3.15's
    # ops.add takes the bias for channels_last (its bias_add shortcut guesses the axis).
    (keras.layers.Conv2D, flk.Conv2D,
     dict(filters=3, kernel_size=3, data_format="channels_first", activation="softmax",
          bias_initializer="random_normal"), (2, 2, 6, 7)),
    (keras.layers.Conv2DTranspose, flk.Conv2DTranspose,
     dict(filters=4, kernel_size=5, strides=2, padding="same", activation="relu"), (2, 5, 5, 3)),
    (keras.layers.Conv2DTranspose, flk.Conv2DTranspose,
     dict(filters=3, kernel_size=3, strides=(3, 2), output_padding=(2, 1), use_bias=False,
          activation="silu"), (2, 4, 3, 2)),
    (keras.layers.Conv2DTranspose, flk.Conv2DTranspose,
     dict(filters=2, kernel_size=4, strides=2, padding="same", data_format="channels_first",
          bias_initializer="ones"), (2, 3, 4, 5)),
]
CASE_IDS = [f"{c[1].__name__}-{i}" for i, c in enumerate(CASES)]
PAIRS = [(keras.layers.Dense, flk.Dense), (keras.layers.Conv2D, flk.Conv2D),
         (keras.layers.Conv2DTranspose, flk.Conv2DTranspose)]
# One case per fused class, for the tests that need only one.
FIRST_CASES = [CASES[0], CASES[5], CASES[8]]
FIRST_IDS = [c[1].__name__ for c in FIRST_CASES]


def twin_layers(stock_class, fused_class, kwargs, input_shape, **extra):
    """A built stock layer and its fused twin holding the same weights."""
    stock = stock_class(**kwargs, **extra)
    fused = fused_class(**kwargs, **extra)
    stock.build((None,) + tuple(input_shape[1:]))
    fused.build((None,) + tuple(input_shape[1:]))
    fused.set_weights(stock.get_weights())
    return stock, fused


def random_input(shape, dtype="float32"):
    return tf.constant(np.random.uniform(-2, 2, size=shape), dtype)


def graph_op_types(fn, *args):
    return {op.type for op in tf.function(fn).get_concrete_function(*args).graph.get_operations()}


@pytest.mark.parametrize("stock_class,fused_class", PAIRS, ids=lambda c: c.__name__)
def test_constructor_signature_is_stock(stock_class, fused_class):
    assert inspect.signature(fused_class.__init__) == inspect.signature(stock_class.__init__)
    assert issubclass(fused_class, keras.layers.Layer)


@pytest.mark.parametrize("stock_class,fused_class,kwargs,input_shape", CASES, ids=CASE_IDS)
def test_outputs_and_gradients_match_stock(stock_class, fused_class, kwargs, input_shape):
    stock, fused = twin_layers(stock_class, fused_class, kwargs, input_shape)
    x = random_input(input_shape)
    grads = []
    for layer in (stock, fused):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(y * tf.sin(y))
        grads.append((y, tape.gradient(loss, [x] + layer.trainable_weights)))
    (y_stock, g_stock), (y_fused, g_fused) = grads
    assert y_fused.shape == y_stock.shape
    assert_close(y_fused, y_stock)
    for actual, expected in zip(g_fused, g_stock):
        assert_close(actual, expected)


@pytest.mark.parametrize("stock_class,fused_class,kwargs,input_shape", FIRST_CASES, ids=FIRST_IDS)
def test_call_runs_the_fused_op(stock_class, fused_class, kwargs, input_shape):
    stock, fused = twin_layers(stock_class, fused_class, kwargs, input_shape)
    x = random_input(input_shape)
    assert any(t.startswith("FusedLayers>") for t in graph_op_types(fused, x))
    assert not any(t.startswith("FusedLayers>") for t in graph_op_types(stock, x))


@pytest.mark.parametrize("stock_class,fused_class,kwargs,input_shape", FIRST_CASES, ids=FIRST_IDS)
def test_stateless_call_uses_the_given_weights(stock_class, fused_class, kwargs, input_shape):
    # The fused call hands the op each variable's current value (variable.value), which
    # inside stateless_call is the value passed in, not the variable's own.
    stock, fused = twin_layers(stock_class, fused_class, kwargs, input_shape)
    x = random_input(input_shape)
    weights = [tf.random.normal(w.shape) for w in stock.trainable_weights]
    y_stock, _ = stock.stateless_call(weights, [], x)
    y_fused, _ = fused.stateless_call(weights, [], x)
    assert_close(y_fused, y_stock)
    assert_close(fused(x), stock(x))  # the variables themselves unchanged


@pytest.mark.parametrize("stock_class,fused_class,kwargs,input_shape", FIRST_CASES, ids=FIRST_IDS)
def test_training_step_under_a_distribution_strategy_matches_stock(stock_class, fused_class,
                                                                   kwargs, input_shape):
    # Under a strategy each variable's value is a distributed variable, which the op reads.
    x = random_input(input_shape)
    results = []
    for layer_class in (stock_class, fused_class):
        strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
        with strategy.scope():
            keras.utils.set_random_seed(3)
            model = keras.Sequential([keras.Input(input_shape[1:]), layer_class(**kwargs)])
            model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        model.fit(x, tf.zeros_like(model(x)), epochs=2, batch_size=input_shape[0], verbose=0)
        results.append(model.get_weights())
    for fused_weight, stock_weight in zip(results[1], results[0]):
        assert_close(fused_weight, stock_weight)


@pytest.mark.parametrize("stock_class,fused_class,kwargs,input_shape", CASES, ids=CASE_IDS)
def test_weights_and_config_are_stock(stock_class, fused_class, kwargs, input_shape):
    stock, fused = twin_layers(stock_class, fused_class, kwargs, input_shape, name="layer")
    assert [(w.path, w.shape, w.dtype) for w in fused.weights] == [
        (w.path, w.shape, w.dtype) for w in stock.weights]
    assert fused.get_config() == stock.get_config()
    clone = fused_class.from_config(fused.get_config())
    assert type(clone) is fused_class
    assert clone.get_config() == fused.get_config()
    assert fused.compute_output_shape((None,) + input_shape[1:]) == stock.compute_output_shape(
        (None,) + input_shape[1:])


def test_weights_interchange_with_stock_checkpoints(tmp_path):
    stock_model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="d")])
    fused_model = keras.Sequential([keras.Input((4,)), flk.Dense(3, name="d")])
    stock_model.save_weights(tmp_path / "stock.weights.h5")
    fused_model.load_weights(tmp_path / "stock.weights.h5")
    x = random_input((2, 4))
    assert_close(fused_model(x), stock_model(x))


@pytest.mark.parametrize("units", [0, -3])
def test_invalid_units_raise_like_stock(units):
    with pytest.raises(ValueError) as stock_error:
        keras.layers.Dense(units)
    with pytest.raises(type(stock_error.value), match="units"):
        flk.Dense(units)


@pytest.mark.parametrize("fused_class,args", [(flk.Dense, (4,)), (flk.Conv2D, (4, 3))],
                         ids=["Dense", "Conv2D"])
@pytest.mark.parametrize("argument", [dict(lora_rank=4), dict(lora_alpha=8)])
def test_lora_arguments_raise(fused_class, args, argument):
    with pytest.raises(ValueError, match=f"{next(iter(argument))}.*keras.layers"):
        fused_class(*args, **argument)


def test_grouped_conv2d_raises():
    keras.layers.Conv2D(4, 3, groups=2)  # stock accepts it
    with pytest.raises(ValueError, match="groups=2.*keras.layers.Conv2D"):
        flk.Conv2D(4, 3, groups=2)


@pytest.mark.parametrize("stock_class,fused_class,kwargs", [
    (keras.layers.Conv2D, flk.Conv2D, dict(filters=0, kernel_size=3)),
    (keras.layers.Conv2D, flk.Conv2D, dict(filters=2, kernel_size=3, strides=2, dilation_rate=2)),
    (keras.layers.Conv2D, flk.Conv2D, dict(filters=2, kernel_size=(3, 0))),
    (keras.layers.Conv2DTranspose, flk.Conv2DTranspose, dict(filters=-1, kernel_size=3)),
    (keras.layers.Conv2DTranspose, flk.Conv2DTranspose,
     dict(filters=2, kernel_size=3, strides=2, output_padding=2)),
    (keras.layers.Conv2DTranspose, flk.Conv2DTranspose,
     dict(filters=2, kernel_size=3, strides=(2, 1), output_padding=(1, 1))),
    (keras.layers.Conv2DTranspose, flk.Conv2DTranspose,
     dict(filters=2, kernel_size=3, strides=2, dilation_rate=2)),
], ids=["filters", "strides-dilation", "kernel-size", "filters", "output-padding",
        "output-padding-pair", "strides-dilation"])
def test_invalid_conv_arguments_raise_like_stock(stock_class, fused_class, kwargs):
    with pytest.raises(Exception) as stock_error:
        stock_class(**kwargs)
    with pytest.raises(type(stock_error.value)) as fused_error:
        fused_class(**kwargs)
    assert str(fused_error.value) == str(stock_error.value)


@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("strides", [1, 2, 3])
@pytest.mark.parametrize("kernel_size", [1, 2, 3, 4])
def test_conv2d_transpose_output_shapes_are_stock(padding, strides, kernel_size):
    """Keras's output-size rule for every legal output_padding, checked on the computed output."""
    x = random_input((1, 3, 4, 2))
    for output_padding in [None] + list(range(strides)):
        kwargs = dict(filters=2, kernel_size=kernel_size, strides=strides, padding=padding,
                      output_padding=output_padding)
        stock, fused = twin_layers(keras.layers.Conv2DTranspose, flk.Conv2DTranspose, kwargs,
                                   x.shape)
        expected = stock.compute_output_shape(x.shape)
        assert fused.compute_output_shape(x.shape) == expected
        try:
            y_stock = stock(x)
        except (tf.errors.OpError, ValueError):
            # Stock TF cannot run this one (same padding, an even kernel and no room for the
            # odd padding); ours must refuse it too, with an error rather than a wrong shape.
            with pytest.raises(tf.errors.InvalidArgumentError, match="output_padding|padding"):
                fused(x)
            continue
        y_fused = fused(x)
        assert tuple(y_fused.shape) == tuple(y_stock.shape) == tuple(expected)
        assert_close(y_fused, y_stock)


@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("strides,dilation_rate", [(1, 1), (2, 1), (3, 1), (1, 2)])
def test_conv2d_output_shapes_are_stock(padding, strides, dilation_rate):
    x = random_input((1, 7, 6, 2))
    kwargs = dict(filters=3, kernel_size=3, strides=strides, padding=padding,
                  dilation_rate=dilation_rate)
    stock, fused = twin_layers(keras.layers.Conv2D, flk.Conv2D, kwargs, x.shape)
    y_stock, y_fused = stock(x), fused(x)
    assert tuple(y_fused.shape) == tuple(y_stock.shape) == tuple(stock.compute_output_shape(x.shape))
    assert_close(y_fused, y_stock)


def test_quantization_raises():
    with pytest.raises(ValueError, match="quantization_config"):
        flk.Dense(4, quantization_config=keras.quantizers.Int8QuantizationConfig())
    with pytest.raises(ValueError, match="quantized dtype policy"):
        flk.Dense(4, dtype="int8_from_float32")
    layer = flk.Dense(4)
    layer.build((None, 3))
    with pytest.raises(NotImplementedError, match="quantize"):
        layer.quantize("int8")
    with pytest.raises(NotImplementedError, match="LoRA"):
        layer.enable_lora(2)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("stock_class,fused_class,kwargs,input_shape", CASES[:2] + FIRST_CASES[1:],
                         ids=CASE_IDS[:2] + FIRST_IDS[1:])
def test_mixed_precision_policies_behave_as_stock(policy, stock_class, fused_class, kwargs,
                                                  input_shape):
    stock, fused = twin_layers(stock_class, fused_class, kwargs, input_shape, dtype=policy)
    x = random_input(input_shape)
    y_stock, y_fused = stock(x), fused(x)
    assert fused.compute_dtype == stock.compute_dtype != "float32"
    assert [w.dtype for w in fused.weights] == [w.dtype for w in stock.weights]
    assert y_fused.dtype == y_stock.dtype
    assert_close(y_fused, y_stock, rtol=6e-2)


def test_global_mixed_policy_applies():
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        layer = flk.Dense(3)
        y = layer(random_input((2, 4)))
    finally:
        keras.config.set_dtype_policy("float32")
    assert y.dtype == tf.bfloat16 and layer.kernel.dtype == "float32"


def test_regularizers_add_the_stock_losses():
    kwargs = dict(units=3, kernel_regularizer="l2", bias_regularizer=keras.regularizers.L1(0.1),
                  activity_regularizer="l1", bias_initializer="ones")
    stock, fused = twin_layers(keras.layers.Dense, flk.Dense, kwargs, (2, 4))
    x = random_input((2, 4))
    stock(x), fused(x)
    assert len(fused.losses) == len(stock.losses) == 3
    for actual, expected in zip(fused.losses, stock.losses):
        assert_close(actual, expected)


def test_constraints_apply_after_each_step():
    model = keras.Sequential([keras.Input((4,)), flk.Dense(
        3, kernel_constraint=keras.constraints.NonNeg(), bias_constraint="non_neg")])
    model.compile(keras.optimizers.SGD(1.0), "mse")
    model.fit(random_input((8, 4)), -10 * tf.ones((8, 3)), epochs=1, verbose=0)
    kernel, bias = model.layers[0].get_weights()
    assert kernel.min() >= 0 and bias.min() >= 0
    assert kernel.max() > 0  # the step moved weights; the constraint projected them


def test_training_argument_and_masks_as_stock():
    ids = tf.constant([[3, 1, 0, 0], [2, 0, 0, 0]])
    embedding = keras.layers.Embedding(5, 4, mask_zero=True)
    embedding.build((None, 4))
    stock, fused = twin_layers(keras.layers.Dense, flk.Dense, dict(units=3), (2, 4, 4))
    x = embedding(ids)
    for training in (None, True, False):
        y_stock, y_fused = stock(x, training=training), fused(x, training=training)
        assert_close(y_fused, y_stock)
        np.testing.assert_array_equal(y_fused._keras_mask, y_stock._keras_mask)
    inputs = keras.Input((4,), dtype="int32")
    outputs = flk.Dense(2)(keras.layers.LSTM(3, return_sequences=True)(embedding(inputs)))
    assert outputs._keras_mask is not None


@pytest.mark.parametrize("stock_class,fused_class,kwargs,input_shape", FIRST_CASES, ids=FIRST_IDS)
def test_xla_runs_the_stock_composition(stock_class, fused_class, kwargs, input_shape):
    stock, fused = twin_layers(stock_class, fused_class, kwargs, input_shape)
    x = random_input(input_shape)
    compiled = tf.function(fused, jit_compile=True)
    assert_close(compiled(x), stock(x))
    hlo = compiled.experimental_get_compiler_ir(x)(stage="hlo")
    assert "custom-call" not in hlo and ("dot(" in hlo or "convolution(" in hlo)


def test_keras_jit_compile_falls_back_to_the_fused_ops():
    fused = keras.Sequential([keras.Input((4,)), flk.Dense(3, activation="relu"), flk.Dense(1)])
    stock = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.Dense(1)])
    assert model_supports_jit(stock) and not model_supports_jit(fused)
    with pytest.warns(UserWarning, match="jit_compile"):
        fused.compile("sgd", "mse", jit_compile=True)
    assert fused.jit_compile is False
    fused.compile("sgd", "mse", jit_compile="auto")
    assert fused.jit_compile is False
    history = fused.fit(random_input((8, 4)), random_input((8, 1)), epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))


# The layer-reuse examples every Keras user knows.

def test_one_layer_twice_in_a_sequential_shares_weights():
    layer = flk.Dense(4, activation="tanh")
    model = keras.Sequential([keras.Input((4,)), layer, layer])
    kernel, bias = layer.get_weights()
    assert len(model.weights) == 2
    x = random_input((3, 4))
    once = np.tanh(x.numpy() @ kernel + bias)
    assert_close(model(x), np.tanh(once @ kernel + bias))


def test_shared_layer_in_the_functional_api():
    shared = flk.Dense(3, activation="relu")
    a, b = keras.Input((5,)), keras.Input((5,))
    model = keras.Model([a, b], keras.layers.Subtract()([shared(a), shared(b)]))
    assert len(model.weights) == 2
    xa, xb = random_input((2, 5)), random_input((2, 5))
    assert_close(model([xa, xb]), shared(xa) - shared(xb))
    model.compile(keras.optimizers.SGD(0.1), "mse")
    before = shared.get_weights()[0].copy()
    model.fit([xa, xb], tf.ones((2, 3)), verbose=0)
    assert not np.allclose(before, shared.get_weights()[0])


def test_one_layer_in_two_models():
    layer = flk.Dense(2)
    first = keras.Sequential([keras.Input((3,)), layer])
    second = keras.Sequential([keras.Input((3,)), layer, keras.layers.Dense(1)])
    first.compile(keras.optimizers.SGD(0.5), "mse")
    x = random_input((4, 3))
    first.fit(x, tf.ones((4, 2)), verbose=0)
    assert_close(second.layers[0](x), first(x))
    assert second.layers[0] is layer and first.weights[0] is second.weights[0]
