"""Models with fused layers saved to .keras and exported, then loaded in a fresh Python process."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import fusedlayers.keras as flk

# Run in a new interpreter: loading must fail before `import fusedlayers` (so the test
# shows that the import is what registers the layers and ops), then succeed after it.
LOADER = textwrap.dedent("""
    import json, sys
    import numpy as np
    import keras, tensorflow as tf
    folder = sys.argv[1]
    x = np.load(folder + "/x.npy")
    result = {}
    try:
        keras.saving.load_model(folder + "/model.keras")
        result["loaded_without_import"] = True
    except Exception:
        result["loaded_without_import"] = False
    import fusedlayers
    model = keras.saving.load_model(folder + "/model.keras")
    result["classes"] = sorted({type(l).__module__ + "." + type(l).__name__
                                for l in model._flatten_layers()})
    np.save(folder + "/keras_predictions.npy", model.predict([x, x], verbose=0)[0])
    model.fit([x, x], [np.zeros((len(x), 3)), np.zeros((len(x), 1))], verbose=0)
    exported = tf.saved_model.load(folder + "/exported")
    np.save(folder + "/exported_predictions.npy", exported.serve([x, x])[0].numpy())
    print(json.dumps(result))
""")


def user_model():
    """A user's stock functional model: a layer shared by two inputs, convolutions, two outputs."""
    shared = keras.layers.Dense(16, activation="relu", name="shared")
    a, b = keras.Input((6,), name="a"), keras.Input((6,), name="b")
    h = keras.layers.Concatenate()([shared(a), shared(b)])
    image = keras.layers.Reshape((4, 4, 2))(h)
    image = keras.layers.Conv2D(3, 3, padding="same", activation="elu", name="conv")(image)
    image = keras.layers.Conv2DTranspose(2, 3, strides=2, activation="tanh", name="up")(image)
    h = keras.layers.Concatenate()([h, keras.layers.Flatten()(image)])
    h = keras.layers.Dense(8, activation="gelu", kernel_regularizer="l2")(h)
    return keras.Model([a, b], [keras.layers.Dense(3, activation="softmax", name="p")(h),
                                keras.layers.Dense(1, name="v")(h)])


def test_fused_trained_model_reloads_in_a_new_process_with_identical_predictions(tmp_path):
    model = flk.fuse(user_model())
    assert model.fuse_report.kept == [] and len(model.fuse_report.swapped) == 6
    model.compile("adam", ["categorical_crossentropy", "mse"])
    x = np.random.normal(size=(32, 6)).astype("float32")
    targets = [keras.utils.to_categorical(np.random.randint(0, 3, 32), 3),
               np.random.normal(size=(32, 1))]
    model.fit([x, x], targets, epochs=2, batch_size=8, verbose=0)
    model.save(tmp_path / "model.keras")
    model.export(tmp_path / "exported", verbose=False)
    np.save(tmp_path / "x.npy", x)
    expected = model.predict([x, x], verbose=0)[0]

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    run = subprocess.run([sys.executable, "-c", LOADER, str(tmp_path)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])

    assert result["loaded_without_import"] is False
    for name in ("dense.Dense", "conv.Conv2D", "conv.Conv2DTranspose"):
        assert f"fusedlayers.keras.{name}" in result["classes"]
    assert not {"keras.src.layers.core.dense.Dense", "keras.src.layers.convolutional.conv2d.Conv2D",
                "keras.src.layers.convolutional.conv2d_transpose.Conv2DTranspose"} & set(
                    result["classes"])
    np.testing.assert_array_equal(np.load(tmp_path / "keras_predictions.npy"), expected)
    np.testing.assert_allclose(np.load(tmp_path / "exported_predictions.npy"), expected,
                               rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype", [None, "mixed_bfloat16"])
def test_keras_file_round_trip_in_process(tmp_path, dtype):
    inputs = keras.Input((5,))
    outputs = flk.Dense(3, activation="tanh", dtype=dtype,
                        kernel_constraint="non_neg")(flk.Dense(4, dtype=dtype)(inputs))
    model = keras.Model(inputs, outputs)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert [type(layer) for layer in loaded.layers[1:]] == [flk.Dense, flk.Dense]
    assert loaded.layers[2].get_config() == model.layers[2].get_config()
    x = np.random.normal(size=(4, 5)).astype("float32")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
