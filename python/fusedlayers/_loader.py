"""Loads the compiled op library after checking TensorFlow is the version it was built for."""

import importlib.util
import os

import tensorflow as tf

from fusedlayers import _build_config


def _major_minor(version):
    return tuple(version.split(".")[:2])


def check_tensorflow_version(installed=tf.__version__, built=_build_config.TF_VERSION):
    """Raises ImportError when the op library's TensorFlow minor differs from `installed`."""
    if _major_minor(installed) != _major_minor(built):
        wanted = ".".join(_major_minor(built))
        raise ImportError(
            f"fusedlayers was built against TensorFlow {built}, but TensorFlow {installed} "
            f"is installed. Custom ops only load into the TensorFlow minor version they were "
            f"compiled for: either `pip install 'tensorflow=={wanted}.*'`, or rebuild fusedlayers "
            f"for this TensorFlow with `pip install --no-build-isolation --force-reinstall "
            f"--no-deps <path to the fusedlayers source>`."
        )


def package_binary_dir():
    """The folder holding the compiled libraries (differs from __file__'s in editable installs)."""
    spec = importlib.util.find_spec("fusedlayers._native")
    if spec is None or spec.origin is None:
        raise ImportError("fusedlayers._native is missing: the package was not built; reinstall it")
    return os.path.dirname(spec.origin)


def load_op_library():
    check_tensorflow_version()
    path = os.path.join(package_binary_dir(), "_fused_ops.so")
    if not os.path.exists(path):
        raise ImportError(f"fusedlayers' op library is missing at {path}: reinstall fusedlayers")
    return tf.load_op_library(path)


gen_ops = load_op_library()
