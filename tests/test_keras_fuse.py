"""flk.fuse / flk.fuse_in_place: stock layers swapped for fused ones, outputs and weights kept."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import fusedlayers.keras as flk
from conftest import assert_close

FUSED_CLASSES = (flk.Dense, flk.Conv2D, flk.Conv2DTranspose)
STOCK_CLASSES = (keras.layers.Dense, keras.layers.Conv2D, keras.layers.Conv2DTranspose)


def fused_layers(model):
    return [layer for layer in model._flatten_layers() if isinstance(layer, FUSED_CLASSES)]


def stock_layers(model):
    return [layer for layer in model._flatten_layers() if type(layer) in STOCK_CLASSES]


def random_input(shape):
    return tf.constant(np.random.uniform(-1, 1, size=shape), tf.float32)


def assert_same_outputs(original, fused, inputs):
    for expected, actual in zip(tf.nest.flatten(original(inputs)), tf.nest.flatten(fused(inputs))):
        assert_close(actual, expected, rtol=1e-5)


def assert_same_weights(original, fused):
    """Same weights in the same order (keras.models.clone_model itself may change their paths)."""
    assert [(w.name, w.shape) for w in fused.weights] == [(w.name, w.shape) for w in original.weights]
    for expected, actual in zip(original.get_weights(), fused.get_weights()):
        np.testing.assert_array_equal(actual, expected)


def test_sequential():
    model = keras.Sequential([
        keras.Input((6,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dropout(0.5),
        keras.layers.BatchNormalization(), keras.layers.Dense(3, activation="softmax"),
    ])
    fused = flk.fuse(model)
    assert isinstance(fused, keras.Sequential) and fused is not model
    assert len(fused_layers(fused)) == 2 and not stock_layers(fused)
    assert len(stock_layers(model)) == 2  # the original is untouched
    assert_same_weights(model, fused)
    assert_same_outputs(model, fused, random_input((4, 6)))
    assert len(fused.fuse_report.swapped) == 2 and fused.fuse_report.kept == []


def test_sequential_without_input_built_by_a_call():
    model = keras.Sequential([keras.layers.Dense(4), keras.layers.Dense(2)])
    x = random_input((3, 5))
    model(x)
    fused = flk.fuse(model)
    assert len(fused_layers(fused)) == 2
    assert_same_weights(model, fused)
    assert_same_outputs(model, fused, x)


def functional_model():
    """Two inputs, three outputs, a layer shared by both branches, a nested model."""
    inner = keras.Sequential([keras.Input((8,)), keras.layers.Dense(8, activation="gelu", name="hidden"),
                              keras.layers.LayerNormalization()], name="inner")
    shared = keras.layers.Dense(8, activation="tanh", name="shared")
    a, b = keras.Input((5,), name="a"), keras.Input((5,), name="b")
    ha, hb = shared(keras.layers.Dense(5, name="pre_a")(a)), shared(b)
    h = keras.layers.Concatenate()([inner(ha), hb])
    logits = keras.layers.Dense(3, activation="softmax", name="classes")(h)
    steps = keras.layers.TimeDistributed(keras.layers.Dense(2, name="per_step"))(
        keras.layers.Reshape((4, 4))(h))
    value = keras.layers.Dense(1, name="value")(hb)
    return keras.Model([a, b], [logits, steps, value], name="user_model")


def test_functional_with_shared_layers_several_ios_and_nested_models():
    model = functional_model()
    fused = flk.fuse(model)
    assert [t.shape for t in fused.outputs] == [t.shape for t in model.outputs]
    assert not stock_layers(fused)
    assert len(fused_layers(fused)) == 6  # pre_a, shared, inner's, classes, per_step, value
    shared = fused.get_layer("shared")
    assert isinstance(shared, flk.Dense) and len(shared._inbound_nodes) == 2
    assert_same_weights(model, fused)
    inputs = [random_input((3, 5)), random_input((3, 5))]
    assert_same_outputs(model, fused, inputs)
    assert {path.rpartition("/")[2] for path in fused.fuse_report.swapped} == {
        "pre_a", "shared", "hidden", "classes", "per_step", "value"}
    assert "inner/hidden" in fused.fuse_report.swapped
    assert fused.fuse_report.kept == []


def autoencoder():
    """The seed auto-encoder in the functional API, its decoder shared by two inputs."""
    image = keras.Input((28, 28, 1), name="image")
    h = keras.layers.Conv2D(32, 4, 2, activation="elu", name="enc1")(image)
    h = keras.layers.Conv2D(64, 4, 2, activation="elu", name="enc2")(h)
    h = keras.layers.Conv2D(128, 4, 2, activation="elu", name="enc3")(h)
    code = keras.layers.Dense(16, name="code")(keras.layers.Flatten()(h))
    decoder = keras.Sequential([
        keras.Input((16,)), keras.layers.Reshape((1, 1, 16)),
        keras.layers.Conv2DTranspose(128, 5, 2, activation="elu", name="dec1"),
        keras.layers.Conv2DTranspose(64, 5, 2, activation="elu", name="dec2"),
        keras.layers.Conv2DTranspose(1, 4, 2, name="dec3"),
    ], name="decoder")
    noise = keras.Input((16,), name="noise")
    return keras.Model([image, noise], [decoder(code), decoder(noise)])


def test_conv_autoencoder_with_a_shared_decoder():
    model = autoencoder()
    fused = flk.fuse(model)
    assert not stock_layers(fused) and len(fused_layers(fused)) == 7
    assert isinstance(fused.get_layer("decoder").get_layer("dec1"), flk.Conv2DTranspose)
    assert isinstance(fused.get_layer("enc1"), flk.Conv2D)
    assert_same_weights(model, fused)
    inputs = [random_input((2, 28, 28, 1)), random_input((2, 16))]
    assert [tuple(y.shape) for y in fused(inputs)] == [(2, 28, 28, 1)] * 2
    assert_same_outputs(model, fused, inputs)


def test_grouped_conv2d_is_kept_stock():
    model = keras.Sequential([keras.Input((5, 5, 4)), keras.layers.Conv2D(4, 3, groups=2, name="g"),
                              keras.layers.Conv2D(2, 1, name="plain")])
    fused = flk.fuse(model)
    [(path, reason)] = fused.fuse_report.kept
    assert path.endswith("g") and "groups=2" in reason
    assert [p.rpartition("/")[2] for p in fused.fuse_report.swapped] == ["plain"]
    assert type(fused.get_layer("g")) is keras.layers.Conv2D
    assert_same_outputs(model, fused, random_input((2, 5, 5, 4)))


def test_unsupported_layers_are_kept_stock_with_the_reason(caplog):
    inputs = keras.Input((4,))
    lora = keras.layers.Dense(3, name="lora")
    h = lora(inputs)
    lora.enable_lora(2)
    quantized = keras.layers.Dense(2, name="quantized")
    outputs = quantized(keras.layers.Dense(3, name="plain")(h))
    quantized.quantize("int8")
    model = keras.Model(inputs, outputs)
    with caplog.at_level("INFO", logger="fusedlayers"):
        fused = flk.fuse(model)
    kept = dict(fused.fuse_report.kept)
    assert set(kept) == {"lora", "quantized"}
    assert "lora_rank" in kept["lora"] and "quantized dtype policy" in kept["quantized"]
    assert fused.fuse_report.swapped == ["plain"]
    assert type(fused.get_layer("lora")) is keras.layers.Dense
    assert "1 layers swapped, 2 left stock" in caplog.text and "lora_rank" in str(
        fused.fuse_report)
    assert_same_outputs(model, fused, random_input((2, 4)))


def test_subclass_of_dense_is_not_swapped():
    class Scaled(keras.layers.Dense):
        def call(self, inputs):
            return 2.0 * super().call(inputs)

    model = keras.Sequential([keras.Input((3,)), Scaled(2, name="scaled")])
    fused = flk.fuse(model)
    assert not fused_layers(fused) and fused.fuse_report.swapped == []
    [(path, reason)] = fused.fuse_report.kept
    assert path.endswith("scaled") and "subclasses a stock layer" in reason
    assert_same_outputs(model, fused, random_input((2, 3)))


def test_compiled_model_stays_compiled():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(keras.optimizers.SGD(0.1), "mse", metrics=["mae"])
    fused = flk.fuse(model)
    assert fused.compiled
    result = fused.evaluate(random_input((4, 3)), tf.zeros((4, 2)), verbose=0, return_dict=True)
    assert set(result) == {"loss", "mae"}


class Subclassed(keras.Model):
    """A user's subclassed model: layers in attributes, a list, a dict and a nested Sequential."""

    def __init__(self):
        super().__init__()
        self.first = keras.layers.Dense(6, activation="relu")
        self.blocks = [keras.layers.Dense(6, activation="silu"), keras.layers.Dense(6)]
        self.heads = {"out": keras.layers.Dense(2)}
        self.mlp = keras.Sequential([keras.layers.Dense(6), keras.layers.Dense(6)])
        self.tied = self.blocks[1]

    def call(self, x):
        x = self.mlp(self.first(x))
        for block in self.blocks:
            x = block(x)
        return self.heads["out"](self.tied(x))


def test_fuse_refuses_subclassed_models_and_points_to_fuse_in_place():
    with pytest.raises(ValueError, match="fuse_in_place"):
        flk.fuse(Subclassed())


def test_fuse_in_place_swaps_attributes_of_a_subclassed_model():
    model = Subclassed()
    x = random_input((4, 5))
    expected = model(x)
    weights_before = [(w.name, w.shape) for w in model.weights]
    first_paths = [w.path for w in model.first.weights]
    values_before = model.get_weights()
    assert flk.fuse_in_place(model) is model
    assert not stock_layers(model)
    assert len(fused_layers(model)) == 6
    assert model.tied is model.blocks[1]  # a layer held twice stays one layer
    assert [(w.name, w.shape) for w in model.weights] == weights_before
    assert [w.path for w in model.first.weights] == first_paths
    for before, after in zip(values_before, model.get_weights()):
        np.testing.assert_array_equal(after, before)
    assert_close(model(x), expected, rtol=1e-5)
    assert len(model.fuse_report.swapped) == 6
    model.compile(keras.optimizers.SGD(0.1), "mse")
    loss = model.fit(x, tf.zeros((4, 2)), epochs=2, verbose=0).history["loss"]
    assert loss[1] < loss[0]


def test_fuse_in_place_refuses_graph_models():
    with pytest.raises(ValueError, match="fuse\\(model\\)"):
        flk.fuse_in_place(keras.Sequential([keras.layers.Dense(2)]))
