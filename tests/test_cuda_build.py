"""The CUDA module's build and argument checks, which need no GPU (skipped when this
build has no CUDA module)."""

import os
import sys

import pytest

import fusedlayers as fl
from fusedlayers import _build_config

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "gpu"))
from gpu_harness import load_native_cuda  # noqa: E402
from gpu_reference import ACTIVATIONS  # noqa: E402

native = load_native_cuda()
pytestmark = pytest.mark.skipif(native is None, reason="built without CUDA (no nvcc found)")

# Addresses that are never dereferenced: every call below fails its checks first.
FAKE = 1 << 40


def dense_args(**overrides):
    args = dict(x=FAKE, kernel=FAKE, bias=None, y=FAKE, m=4, k=3, n=2, dtype="float32")
    args.update(overrides)
    return args


def test_build_config_and_device_info():
    assert _build_config.CUDA
    info = native.device_info()
    assert info["runtime_version"] >= 12000
    assert isinstance(info["device_count"], int)
    assert "90" in native.ARCHITECTURES.split()[-1]


def test_reference_activations_match_the_table():
    assert list(ACTIVATIONS) == list(fl.activations.NAMES)


@pytest.mark.parametrize("overrides,message", [
    (dict(dtype="float64"), "dtype must be one of"),
    (dict(activation="mish"), "activation must be one of"),
    (dict(m=-1), "must be >= 0"),
    (dict(x=None), "x is null"),
    (dict(y=None), "y is null"),
    (dict(x=-8), "non-negative address"),
    (dict(x="0x10"), "device address"),
    (dict(stream=-1), "non-negative handle"),
    (dict(m=2**40, k=2**40), "fit int64"),
    (dict(workspace=None, workspace_bytes=64), "workspace"),
])
def test_dense_forward_rejects_bad_arguments(overrides, message):
    with pytest.raises(ValueError, match=message):
        native.dense_forward(**dense_args(**overrides))


def test_dense_backward_checks_preactivation_and_workspace():
    common = dict(dy=FAKE, x=FAKE, kernel=FAKE, y=FAKE, dx=FAKE, dkernel=FAKE, dbias=FAKE, m=4,
                  k=3, n=2, dtype="float16")
    needed = native.backward_workspace_bytes(rows=4, cols=2, dtype="float16")
    with pytest.raises(ValueError, match="needs the pre-activation z"):
        native.dense_backward(activation="gelu", workspace=FAKE, workspace_bytes=needed, **common)
    with pytest.raises(ValueError, match=f"workspace must hold {needed} bytes"):
        native.dense_backward(workspace=FAKE, workspace_bytes=needed - 1, **common)
    with pytest.raises(ValueError, match="workspace must hold"):
        native.dense_backward(workspace=None, workspace_bytes=needed, **common)


def test_workspace_size():
    small = native.backward_workspace_bytes(rows=1, cols=1, dtype="float32")
    assert small >= 256
    assert native.backward_workspace_bytes(rows=1000, cols=10, dtype="float32") >= 1000 * 10 * 4
    with pytest.raises(ValueError):
        native.backward_workspace_bytes(rows=-1, cols=1, dtype="float32")
    with pytest.raises(ValueError):
        native.backward_workspace_bytes(rows=2**40, cols=2**40, dtype="float32")


def test_conv_output_shapes_follow_the_cpu_geometry():
    assert native.conv2d_output_shape(x_shape=(2, 7, 6, 3), kernel_shape=(3, 3, 3, 5),
                                      strides=(2, 2), padding="same") == (2, 4, 3, 5)
    assert native.conv2d_transpose_output_shape(x_shape=(2, 5, 5, 3), kernel_shape=(3, 3, 4, 3),
                                                strides=(2, 2), padding="same") == (2, 10, 10, 4)


@pytest.mark.parametrize("name", ["conv2d", "conv2d_transpose"])
def test_conv_rejects_bad_arguments(name):
    forward = getattr(native, name + "_forward")
    backward = getattr(native, name + "_backward")
    ok = dict(x=FAKE, x_shape=(1, 5, 5, 2), kernel=FAKE, kernel_shape=(3, 3, 2, 2), bias=None,
              y=FAKE, dtype="bfloat16")
    for overrides, message in [(dict(kernel_shape=(3, 3, 7, 7)), "channels"),
                               (dict(padding="full"), "padding must be"),
                               (dict(strides=(0, 1)), "stride"),
                               (dict(x_shape=(1, 5, 5)), "x_shape"),
                               (dict(y=None), "y is null"),
                               (dict(activation="swishy"), "activation must be one of")]:
        with pytest.raises(ValueError, match=message):
            forward(**{**ok, **overrides})
    with pytest.raises(ValueError, match="needs the pre-activation z"):
        backward(dy=FAKE, x=FAKE, x_shape=(1, 5, 5, 2), kernel=FAKE, kernel_shape=(3, 3, 2, 2),
                 y=FAKE, dx=FAKE, dkernel=None, dbias=None, dtype="float32", activation="silu",
                 workspace=FAKE, workspace_bytes=1 << 20)
