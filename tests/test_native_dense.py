"""The dense kernels through the pybind11 module (no TensorFlow op involved) against numpy."""

import math

import numpy as np
import pytest

from fusedlayers import _native
from fusedlayers.activations import NAMES, NEEDS_PREACTIVATION

# numpy versions of the activations and their derivatives, in float64.
_SELU_A, _SELU_S = 1.6732632423543772, 1.0507009873554805


_erf = np.vectorize(math.erf)


def np_act(name, z, slope=0.2):
    sig = 1 / (1 + np.exp(-z))
    return {
        "linear": z, "relu": np.maximum(z, 0), "relu6": np.clip(z, 0, 6),
        "leaky_relu": np.where(z > 0, z, slope * z), "elu": np.where(z > 0, z, np.expm1(z)),
        "selu": _SELU_S * np.where(z > 0, z, _SELU_A * np.expm1(z)),
        "gelu": 0.5 * z * (1 + _erf(z / np.sqrt(2))),
        "gelu_tanh": 0.5 * z * (1 + np.tanh(np.sqrt(2 / np.pi) * (z + 0.044715 * z**3))),
        "sigmoid": sig, "tanh": np.tanh(z), "silu": z * sig, "softplus": np.logaddexp(0, z),
    }[name]


def np_act_grad(name, z, h=1e-6):
    return (np_act(name, z + h) - np_act(name, z - h)) / (2 * h)


@pytest.mark.parametrize("activation", NAMES)
@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (7, 5, 3), (13, 300, 41), (100, 17, 70)])
@pytest.mark.parametrize("threads", [1, 3])
def test_forward_and_backward(activation, m, k, n, threads):
    x = np.random.uniform(-2, 2, (m, k))
    w = np.random.uniform(-1, 1, (k, n)) / np.sqrt(k)
    b = np.random.uniform(-1, 1, n)
    z_ref = x @ w + b
    y, z = _native.dense_forward(x, w, b, activation, threads=threads)
    np.testing.assert_allclose(y, np_act(activation, z_ref), atol=1e-12)
    if activation in NEEDS_PREACTIVATION:
        np.testing.assert_allclose(z, z_ref, atol=1e-12)
    else:
        assert z.size == 0

    dy = np.random.uniform(-1, 1, (m, n))
    # Stay clear of kinks, where the finite-difference reference is undefined.
    dz = dy * np_act_grad(activation, z_ref)
    if activation in ("relu", "relu6", "leaky_relu", "elu", "selu"):
        dz = np.where(np.abs(z_ref) < 1e-4, 0, dz)
        dy = np.where(np.abs(z_ref) < 1e-4, 0, dy)
    dx, dw, db = _native.dense_backward(dy, x, w, y, z if z.size else None, True, activation,
                                        threads=threads)
    np.testing.assert_allclose(dx, dz @ w.T, atol=1e-6)
    np.testing.assert_allclose(dw, x.T @ dz, atol=1e-6)
    np.testing.assert_allclose(db, dz.sum(0), atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m,k,n", [(128, 256, 256), (32, 784, 256), (300, 100, 257)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_backward_products_side_by_side(dtype, m, k, n, with_bias):
    """Products of 8-32 Mflop each: on two or more threads dx and [dW; db] run side by
    side, one per thread (with a batch shorter than K, db summed on its own); the same
    bits as one after the other on one thread, and numpy's values."""
    rng = np.random.default_rng(21)
    x = rng.uniform(-2, 2, (m, k)).astype(dtype)
    w = (rng.uniform(-1, 1, (k, n)) / np.sqrt(k)).astype(dtype)
    dy = rng.uniform(-1, 1, (m, n)).astype(dtype)
    y, _ = _native.dense_forward(x, w, np.zeros(n, dtype), "relu", threads=1)
    serial = _native.dense_backward(dy, x, w, y, None, with_bias, "relu", threads=1)
    for threads in (2, 3):
        for got, want in zip(_native.dense_backward(dy, x, w, y, None, with_bias, "relu",
                                                    threads=threads), serial):
            np.testing.assert_array_equal(got, want)
    dz = dy.astype(np.float64) * (y > 0)
    tol = 1e-3 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(serial[0], dz @ w.T.astype(np.float64), atol=tol)
    np.testing.assert_allclose(serial[1], x.T.astype(np.float64) @ dz, atol=tol * m)
    if with_bias:
        np.testing.assert_allclose(serial[2], dz.sum(0), atol=tol * m)
    else:
        assert serial[2] is None


def test_float32_forward():
    x = np.random.randn(33, 65).astype(np.float32)
    w = np.random.randn(65, 17).astype(np.float32)
    y, _ = _native.dense_forward(x, w, None, "relu", threads=2)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, np.maximum(x.astype(np.float64) @ w, 0), rtol=1e-5, atol=1e-4)


def test_errors_are_value_errors():
    with pytest.raises(ValueError, match="kernel must have shape"):
        _native.dense_forward(np.ones((2, 3)), np.ones((4, 2)), None)
    with pytest.raises(ValueError, match="activation must be one of"):
        _native.dense_forward(np.ones((2, 3)), np.ones((3, 2)), None, "mish")
    with pytest.raises(ValueError, match="needs the pre-activation"):
        _native.dense_backward(np.ones((2, 2)), np.ones((2, 3)), np.ones((3, 2)), np.ones((2, 2)),
                               None, True, "gelu")
