"""Checkpoints (round trip, restore-on-create) and SavedModels loaded in fresh processes."""

import os
import subprocess
import sys

import numpy as np
import tensorflow as tf

import fusedlayers as fl
from conftest import assert_close
from saved_model_child import outputs_and_gradients

CHILD = os.path.join(os.path.dirname(__file__), "saved_model_child.py")


class Regressor(fl.Module):
    """A layer-dictionary model with convolutions, a nested Sequential, one layer used twice."""

    def __call__(self, x):
        image = self.get("image", fl.Reshape, (2, 3, 1))(x)
        image = self.get("conv", fl.Conv2D, 4, 2, padding="same", activation="elu")(image)
        image = self.get("up", fl.Conv2DTranspose, 2, 2, strides=2, activation="gelu")(image)
        x = tf.concat([x, self.get("flat", fl.Flatten)(image)], axis=-1)
        hidden = self.get("embed", fl.Dense, 8, activation="tanh", kernel_regularizer="l2")(x)
        hidden = self.get("body", fl.Sequential, [fl.Dense(8, activation="gelu"), fl.Dense(8)])(
            hidden)
        hidden = self.get("shared", fl.Dense, 8, activation="relu")(hidden)
        hidden = self.get("shared", fl.Dense, 8, activation="relu")(hidden)
        return self.get("head", fl.Dense, 2)(hidden)


def _perturb(module):
    """Moves every variable off its initial value, so a restore has something to prove."""
    for v in module.variables:
        v.assign(v + tf.random.normal(v.shape))


def _inputs():
    return tf.random.stateless_normal([5, 6], seed=[3, 4])


def test_checkpoint_round_trip(tmp_path):
    model = Regressor()
    x = _inputs()
    model(x)
    _perturb(model)
    path = tf.train.Checkpoint(model=model).save(str(tmp_path / "ckpt"))

    clone = Regressor()
    clone(x)  # built with fresh values, then overwritten
    tf.train.Checkpoint(model=clone).restore(path).assert_consumed()
    np.testing.assert_array_equal(clone(x), model(x))
    names = {name for name, _ in tf.train.list_variables(path)}
    assert "model/_layers/shared/kernel/.ATTRIBUTES/VARIABLE_VALUE" in names
    assert "model/_layers/body/_layers/1/bias/.ATTRIBUTES/VARIABLE_VALUE" in names


def test_restore_on_create_inside_tf_function(tmp_path):
    model = Regressor()
    x = _inputs()
    model(x)
    _perturb(model)
    path = tf.train.Checkpoint(model=model).save(str(tmp_path / "ckpt"))

    clone = Regressor()
    status = tf.train.Checkpoint(model=clone).restore(path)
    assert not clone.variables
    call = tf.function(clone)
    np.testing.assert_array_equal(call(x), model(x))  # the values are applied at build
    status.assert_consumed()
    np.testing.assert_array_equal(call(x[:2]), model(x[:2]))


def test_restore_on_create_for_reused_lists(tmp_path):
    def network(x, layers):
        reuse = fl.ReuseElements(layers)
        hidden = reuse(fl.Dense(4, activation="relu"))(x)
        return reuse(fl.Dense(3))(hidden)

    def tracked():
        holder = tf.Module()
        holder.layers = []
        return holder

    source = tracked()
    x = _inputs()
    network(x, source.layers)
    _perturb(source)
    path = tf.train.Checkpoint(net=source).save(str(tmp_path / "ckpt"))

    target = tracked()
    status = tf.train.Checkpoint(net=target).restore(path)
    np.testing.assert_array_equal(network(x, target.layers), network(x, source.layers))
    status.assert_consumed()


class Exported(tf.Module):
    """What gets exported: the model behind a tf.function with an input signature."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    @tf.function(input_signature=[tf.TensorSpec([None, 6], tf.float32)])
    def __call__(self, x):
        return self.model(x)


def _env():
    package_parent = os.path.dirname(os.path.dirname(fl.__file__))
    pythonpath = os.pathsep.join(filter(None, [package_parent, os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": pythonpath, "TF_CPP_MIN_LOG_LEVEL": "3"}


LOAD_WITHOUT_IMPORT = """
import sys
import tensorflow as tf
tf.saved_model.load(sys.argv[1])
"""


def _python(*args):
    return subprocess.Popen([sys.executable, *map(str, args)], env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_saved_model_in_fresh_process(tmp_path):
    exported = Exported(Regressor())
    x = _inputs()
    expected = outputs_and_gradients(exported, x)
    export_dir = tmp_path / "saved"
    tf.saved_model.save(exported, str(export_dir),
                        signatures={"serving_default": exported.__call__})
    np.save(tmp_path / "x.npy", x.numpy())

    with_import = _python(CHILD, export_dir, tmp_path / "x.npy", tmp_path / "out.npz")
    without_import = _python("-c", LOAD_WITHOUT_IMPORT, export_dir)
    log = with_import.communicate(timeout=180)[0]
    failure = without_import.communicate(timeout=180)[0]
    assert with_import.returncode == 0, log[-4000:]

    loaded = np.load(tmp_path / "out.npz")
    assert set(loaded.files) == set(expected) | {"served"}
    assert len(expected) == 2 + 14  # y, dx, and the 14 trainable variables
    np.testing.assert_array_equal(loaded["y"], expected["y"])
    np.testing.assert_array_equal(loaded["served"], expected["y"])
    for name in expected:
        assert_close(loaded[name], expected[name])

    # Without `import fusedlayers` TensorFlow cannot know the ops: it names the missing one.
    assert without_import.returncode != 0
    assert "Op type not registered 'FusedLayers>Fused" in failure, failure[-4000:]
