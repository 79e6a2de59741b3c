"""build_info(): the versions, CPU features and kernel paths this copy of fusedlayers runs with."""

import platform

import tensorflow as tf

from fusedlayers import _build_config, _native


def build_info():
    """A dict of what was built and what was found at run time."""
    features = _native.cpu_features()
    return {
        "fusedlayers": _package_version(),
        "tensorflow_runtime": tf.__version__,
        "tensorflow_built_against": _build_config.TF_VERSION,
        "compiler": _build_config.CXX_COMPILER,
        "build_type": _build_config.BUILD_TYPE,
        "sanitizers": _build_config.SANITIZERS,
        "cpu": features.get("brand") or platform.processor(),
        "cpu_features": {k: v for k, v in features.items() if isinstance(v, bool)},
        "kernel_isa": _native.kernel_isa(),
        "bf16_kernel": _native.bf16_kernel(),
        "cuda": False,
    }


def _package_version():
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fusedlayers")
    except PackageNotFoundError:
        return "unknown"
