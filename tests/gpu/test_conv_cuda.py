"""The CUDA conv2d / conv2d_transpose kernels against a float64 numpy reference
(needs a GPU, CuPy or PyTorch)."""

import numpy as np
import pytest

from gpu_harness import DTYPES, TOLERANCE, DeviceTensor, Workspace, assert_close, require_gpu, rounded
from gpu_reference import ACTIVATIONS, NEEDS_PREACTIVATION, act, act_grad, gather, kernel_grad, scatter

native, backend = require_gpu()

# (x shape, kernel size, strides, padding, dilations, output_padding, filters): odd
# sizes, stride and dilation, both paddings, channel counts off the tile sizes.
CASES = [
    ((1, 5, 5, 1), (3, 3), (1, 1), "valid", (1, 1), None, 1),
    ((2, 7, 6, 3), (3, 3), (2, 2), "same", (1, 1), None, 5),
    ((2, 9, 8, 4), (3, 2), (1, 1), "same", (2, 2), None, 7),
    ((3, 6, 7, 33), (5, 5), (2, 1), "valid", (1, 1), None, 17),
    ((1, 11, 13, 70), (3, 3), (3, 2), "same", (1, 1), None, 65),
    ((2, 4, 5, 6), (4, 3), (2, 2), "same", (1, 1), (1, 0), 3),
]
PRECISIONS = [(d, False) for d in DTYPES] + [("float32", True)]


def run_case(transpose, case, activation, dtype, tf32, rng):
    x_shape, ksize, strides, padding, dilations, output_padding, filters = case
    channels = x_shape[3]
    # Keras layouts: conv2d [kh, kw, in, filters]; conv2d_transpose [kh, kw, filters, in].
    kernel_shape = (*ksize, filters, channels) if transpose else (*ksize, channels, filters)
    name = "conv2d_transpose" if transpose else "conv2d"
    attrs = dict(strides=strides, padding=padding, dilations=dilations,
                 output_padding=output_padding)
    y_shape = getattr(native, name + "_output_shape")(x_shape=x_shape, kernel_shape=kernel_shape,
                                                       **attrs)
    fan_in = ksize[0] * ksize[1] * channels
    x = rounded(rng.uniform(-1, 1, x_shape), dtype)
    kernel = rounded(rng.uniform(-1, 1, kernel_shape) / np.sqrt(fan_in), dtype)
    bias = rounded(rng.uniform(-1, 1, y_shape[3]), dtype)
    tensors = {k: DeviceTensor(backend, dtype, values=v) for k, v in
               (("x", x), ("kernel", kernel), ("bias", bias))}
    d_y, d_z = DeviceTensor(backend, dtype, shape=y_shape), DeviceTensor(backend, dtype, shape=y_shape)
    common = dict(x_shape=x_shape, kernel_shape=kernel_shape, dtype=dtype, activation=activation,
                  allow_tf32=tf32, stream=backend.stream(), **attrs)
    getattr(native, name + "_forward")(x=tensors["x"].ptr, kernel=tensors["kernel"].ptr,
                                       bias=tensors["bias"].ptr, y=d_y.ptr, z=d_z.ptr, **common)
    geometry = (strides, dilations, padding)
    if transpose:
        z_ref = scatter(x, kernel, y_shape[1:3], *geometry) + bias
    else:
        z_ref = gather(x, kernel, y_shape[1:3], *geometry) + bias
    tol = TOLERANCE["tf32" if tf32 else dtype]
    y, z = d_y.to_host(), d_z.to_host()
    assert_close(z, z_ref, tol)
    assert_close(y, act(activation, z_ref), tol)

    dy = rounded(rng.uniform(-1, 1, y_shape), dtype)
    d_dy = DeviceTensor(backend, dtype, values=dy)
    d_dx = DeviceTensor(backend, dtype, shape=x_shape)
    d_dk = DeviceTensor(backend, dtype, shape=kernel_shape)
    d_db = DeviceTensor(backend, dtype, shape=(y_shape[3],))
    rows = int(np.prod(y_shape[:3]))
    workspace = Workspace(backend, native.backward_workspace_bytes(rows=rows, cols=y_shape[3],
                                                                   dtype=dtype))
    getattr(native, name + "_backward")(
        dy=d_dy.ptr, x=tensors["x"].ptr, kernel=tensors["kernel"].ptr, y=d_y.ptr,
        z=d_z.ptr if activation in NEEDS_PREACTIVATION else None, dx=d_dx.ptr, dkernel=d_dk.ptr,
        dbias=d_db.ptr, workspace=workspace.ptr, workspace_bytes=workspace.nbytes, **common)
    dz = dy * act_grad(activation, y, z)
    if transpose:
        dx_ref = gather(dz, kernel, x_shape[1:3], *geometry)
        dk_ref = kernel_grad(dz, x, kernel_shape, *geometry)
    else:
        dx_ref = scatter(dz, kernel, x_shape[1:3], *geometry)
        dk_ref = kernel_grad(x, dz, kernel_shape, *geometry)
    assert_close(d_dx.to_host(), dx_ref, tol)
    assert_close(d_dk.to_host(), dk_ref, tol)
    assert_close(d_db.to_host(), dz.sum(axis=(0, 1, 2)), tol)


# Every case for both ops, but output_padding only for conv2d_transpose (it has no
# meaning for conv2d).
OP_CASES = [(transpose, case) for transpose in (False, True) for case in CASES
            if transpose or case[5] is None]


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("dtype,tf32", PRECISIONS)
@pytest.mark.parametrize(
    "transpose,case", OP_CASES,
    ids=[f"{'conv2d_transpose' if t else 'conv2d'}-case{CASES.index(c)}" for t, c in OP_CASES])
def test_forward_and_backward(transpose, case, activation, dtype, tf32):
    rng = np.random.default_rng(hash((transpose, CASES.index(case))) % 2**32)
    run_case(transpose, case, activation, dtype, tf32, rng)
