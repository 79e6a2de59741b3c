"""The CUDA dense kernels against a float64 numpy reference (needs a GPU, CuPy or PyTorch)."""

import numpy as np
import pytest

from gpu_harness import DTYPES, TOLERANCE, DeviceTensor, Workspace, assert_close, require_gpu, rounded
from gpu_reference import ACTIVATIONS, NEEDS_PREACTIVATION, act, act_grad

native, backend = require_gpu()

# Odd sizes around the 64 x 64 x 32 tile, a single row/column, and one large enough
# for several tiles in every direction.
SHAPES = [(1, 1, 1), (3, 5, 7), (17, 33, 65), (64, 32, 64), (130, 70, 67), (257, 300, 129)]
PRECISIONS = [(d, False) for d in DTYPES] + [("float32", True)]


def tolerance(dtype, tf32):
    return TOLERANCE["tf32" if tf32 else dtype]


def inputs(m, k, n, dtype, rng):
    x = rounded(rng.uniform(-1, 1, (m, k)), dtype)
    kernel = rounded(rng.uniform(-1, 1, (k, n)) / np.sqrt(k), dtype)
    bias = rounded(rng.uniform(-1, 1, n), dtype)
    return x, kernel, bias


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("dtype,tf32", PRECISIONS)
@pytest.mark.parametrize("m,k,n", SHAPES)
@pytest.mark.parametrize("with_bias", [True, False])
def test_forward_and_backward(activation, dtype, tf32, m, k, n, with_bias):
    rng = np.random.default_rng(m * 1000 + k * 10 + n)
    x, kernel, bias = inputs(m, k, n, dtype, rng)
    d_x, d_k = DeviceTensor(backend, dtype, values=x), DeviceTensor(backend, dtype, values=kernel)
    d_b = DeviceTensor(backend, dtype, values=bias) if with_bias else None
    d_y = DeviceTensor(backend, dtype, shape=(m, n))
    d_z = DeviceTensor(backend, dtype, shape=(m, n))
    sizes = dict(m=m, k=k, n=n, dtype=dtype, activation=activation, allow_tf32=tf32,
                 stream=backend.stream())
    native.dense_forward(x=d_x.ptr, kernel=d_k.ptr, bias=d_b.ptr if d_b else None, y=d_y.ptr,
                         z=d_z.ptr, **sizes)
    z_ref = x @ kernel + (bias if with_bias else 0.0)
    tol = tolerance(dtype, tf32)
    y, z = d_y.to_host(), d_z.to_host()
    assert_close(z, z_ref, tol)
    assert_close(y, act(activation, z_ref), tol)

    dy = rounded(rng.uniform(-1, 1, (m, n)), dtype)
    d_dy = DeviceTensor(backend, dtype, values=dy)
    outputs = {name: DeviceTensor(backend, dtype, shape=shape)
               for name, shape in (("dx", (m, k)), ("dkernel", (k, n)), ("dbias", (n,)))}
    workspace = Workspace(backend, native.backward_workspace_bytes(rows=m, cols=n, dtype=dtype))
    native.dense_backward(dy=d_dy.ptr, x=d_x.ptr, kernel=d_k.ptr, y=d_y.ptr,
                          z=d_z.ptr if activation in NEEDS_PREACTIVATION else None,
                          dx=outputs["dx"].ptr, dkernel=outputs["dkernel"].ptr,
                          dbias=outputs["dbias"].ptr, workspace=workspace.ptr,
                          workspace_bytes=workspace.nbytes, **sizes)
    dz = dy * act_grad(activation, y, z)
    assert_close(outputs["dx"].to_host(), dz @ kernel.T, tol)
    assert_close(outputs["dkernel"].to_host(), x.T @ dz, tol)
    assert_close(outputs["dbias"].to_host(), dz.sum(axis=0), tol)


@pytest.mark.parametrize("dtype", DTYPES)
def test_outputs_skipped_when_null_and_bias_gradient_deterministic(dtype):
    m, k, n = 1000, 40, 33
    rng = np.random.default_rng(7)
    x, kernel, _ = inputs(m, k, n, dtype, rng)
    y = act("relu", x @ kernel)
    dy = rng.uniform(-1, 1, (m, n))
    tensors = [DeviceTensor(backend, dtype, values=v) for v in (x, kernel, rounded(y, dtype), dy)]
    workspace = Workspace(backend, native.backward_workspace_bytes(rows=m, cols=n, dtype=dtype))
    results = []
    for _ in range(3):
        d_db = DeviceTensor(backend, dtype, shape=(n,))
        native.dense_backward(dy=tensors[3].ptr, x=tensors[0].ptr, kernel=tensors[1].ptr,
                              y=tensors[2].ptr, dx=None, dkernel=None, dbias=d_db.ptr, m=m, k=k,
                              n=n, dtype=dtype, activation="relu", workspace=workspace.ptr,
                              workspace_bytes=workspace.nbytes, stream=backend.stream())
        results.append(d_db.to_host())
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])


def test_empty_reduction_gives_activation_of_bias():
    d_b = DeviceTensor(backend, "float32", values=np.array([-1.0, 2.0]))
    d_y = DeviceTensor(backend, "float32", shape=(3, 2))
    native.dense_forward(x=None, kernel=None, bias=d_b.ptr, y=d_y.ptr, m=3, k=0, n=2,
                         dtype="float32", activation="relu", stream=backend.stream())
    assert_close(d_y.to_host(), np.tile([0.0, 2.0], (3, 1)), 0)


def test_host_pointer_is_rejected():
    host = np.zeros(4, np.float32)
    d_y = DeviceTensor(backend, "float32", shape=(2, 2))
    with pytest.raises(ValueError, match="not device memory"):
        native.dense_forward(x=host.ctypes.data, kernel=host.ctypes.data, bias=None, y=d_y.ptr,
                             m=2, k=2, n=2, dtype="float32")

