"""The conv kernels through the _native harness (no TensorFlow op) against numpy references."""

import itertools
import os
import subprocess
import sys

import numpy as np
import pytest

from fusedlayers import _native
from test_engine import supported_isas


def axis_geometry(size, kernel, stride, dilation, padding, transpose=False, output_padding=None):
    """(big, small, pad_before) of one axis by TensorFlow's conv / Keras's conv_transpose rules."""
    k_eff = (kernel - 1) * dilation + 1
    if transpose:
        small = size
        if padding == "valid":
            op = max(k_eff, stride) - k_eff if output_padding is None else output_padding
            big = (size - 1) * stride + k_eff + op
        else:
            big = size * stride if output_padding is None else (
                (size - 1) * stride + k_eff % 2 + output_padding)
    else:
        big = size
        small = (size - k_eff) // stride + 1 if padding == "valid" else -(-size // stride)
    pad = max((small - 1) * stride + k_eff - big, 0) // 2 if padding == "same" else 0
    return big, small, pad


def conv_windows(big_shape, small_hw, kernel, strides, dilations, pads):
    """For each tap: the big-tensor slices (on a zero-padded copy) that meet the small grid."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, strides, dilations
    windows = []
    for i, j in itertools.product(range(kh), range(kw)):
        windows.append((i, j, slice(i * dh, i * dh + (small_hw[0] - 1) * sh + 1, sh),
                        slice(j * dw, j * dw + (small_hw[1] - 1) * sw + 1, sw)))
    padded_h = max(big_shape[1] + pads[0], (small_hw[0] - 1) * sh + (kh - 1) * dh + 1)
    padded_w = max(big_shape[2] + pads[1], (small_hw[1] - 1) * sw + (kw - 1) * dw + 1)
    return windows, (padded_h, padded_w)


def pad_big(big, pads, padded_hw):
    out = np.zeros((big.shape[0],) + padded_hw + big.shape[3:], big.dtype)
    out[:, pads[0]:pads[0] + big.shape[1], pads[1]:pads[1] + big.shape[2]] = big
    return out


def ref_gather(big, kernel, small_hw, strides, dilations, pads):
    """small[n, o] = sum_taps big[n, o * s + t * d - pad] @ kernel[t]  (conv2d)."""
    windows, padded_hw = conv_windows(big.shape, small_hw, kernel.shape[:2], strides, dilations,
                                      pads)
    padded = pad_big(big, pads, padded_hw)
    out = np.zeros((big.shape[0],) + tuple(small_hw) + (kernel.shape[3],))
    for i, j, rows, cols in windows:
        out += padded[:, rows, cols] @ kernel[i, j]
    return out


def ref_scatter(small, kernel, big_hw, strides, dilations, pads):
    """The adjoint of ref_gather: conv2d_transpose."""
    windows, padded_hw = conv_windows((small.shape[0],) + tuple(big_hw), small.shape[1:3],
                                      kernel.shape[:2], strides, dilations, pads)
    padded = np.zeros((small.shape[0],) + padded_hw + (kernel.shape[2],))
    for i, j, rows, cols in windows:
        padded[:, rows, cols] += small @ kernel[i, j].T
    return padded[:, pads[0]:pads[0] + big_hw[0], pads[1]:pads[1] + big_hw[1]]


def ref_kernel_grad(big, small_grad, kernel_shape, strides, dilations, pads):
    windows, padded_hw = conv_windows(big.shape, small_grad.shape[1:3], kernel_shape[:2], strides,
                                      dilations, pads)
    padded = pad_big(big, pads, padded_hw)
    dk = np.zeros(kernel_shape)
    for i, j, rows, cols in windows:
        dk[i, j] = np.einsum("nhwb,nhws->bs", padded[:, rows, cols], small_grad)
    return dk


def assert_close(actual, expected, dtype):
    """Elementwise within rtol * max(1, max|expected|), rtol by dtype."""
    rtol = 2e-5 if dtype == np.float32 else 1e-12
    scale = max(1.0, float(np.abs(expected).max(initial=0)))
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rtol * scale)


ACTIVATIONS = {  # forward and derivative (from z) in numpy
    "linear": (lambda z: z, lambda z: np.ones_like(z)),
    "relu": (lambda z: np.maximum(z, 0), lambda z: (z > 0).astype(z.dtype)),
    "tanh": (np.tanh, lambda z: 1 - np.tanh(z) ** 2),
    "elu": (lambda z: np.where(z > 0, z, np.expm1(np.minimum(z, 0))),
            lambda z: np.where(z > 0, 1.0, np.exp(np.minimum(z, 0)))),
}

CASES = [  # (batch, h, w, big C, small C, kernel, strides, dilations, padding, output_padding)
    (2, 5, 6, 3, 4, (3, 3), (1, 1), (1, 1), "valid", None),
    (2, 5, 6, 3, 4, (3, 3), (1, 1), (1, 1), "same", None),
    (1, 7, 5, 2, 3, (3, 2), (2, 2), (1, 1), "same", None),
    (3, 4, 4, 5, 2, (4, 4), (2, 2), (1, 1), "same", None),
    (2, 4, 3, 3, 5, (2, 3), (3, 2), (1, 1), "valid", None),
    (1, 9, 8, 2, 2, (3, 3), (1, 1), (2, 2), "same", None),
    (1, 9, 8, 2, 2, (2, 3), (1, 1), (2, 1), "valid", None),
    (2, 3, 4, 3, 3, (1, 1), (3, 3), (1, 1), "valid", None),
    (2, 3, 4, 3, 3, (5, 5), (2, 3), (1, 1), "valid", (1, 2)),
    (2, 3, 3, 3, 3, (3, 3), (2, 2), (1, 1), "same", (1, 0)),
    (0, 3, 3, 2, 2, (3, 3), (2, 2), (1, 1), "same", None),
    (1, 1, 1, 1, 1, (1, 1), (1, 1), (1, 1), "same", None),
    # Runs of 4 taps x 5 channels (one vector and a part on AVX-512), 2 x 3 channels (a
    # part of one), edge positions on both sides.
    (2, 9, 11, 5, 3, (4, 4), (2, 2), (1, 1), "same", None),
    (1, 6, 7, 3, 2, (2, 2), (1, 2), (1, 1), "valid", None),
    # 3 x 3 taps x 64 channels: a kernel 576 deep (two depth steps), 18 micro-panels wide.
    (2, 5, 5, 64, 40, (3, 3), (1, 1), (1, 1), "same", None),
    # Stride phases of 3 taps along h (the last one past the kernel's end) and 2 along w:
    # Winograd's F(2x2, 3x3) with zero taps, tiles past the output's edge.
    (2, 8, 10, 6, 5, (5, 6), (2, 3), (1, 1), "same", None),
]


def case_geometry(case, transpose):
    batch, h, w, cb, cs, kernel, strides, dilations, padding, output_padding = case
    axes = [axis_geometry(size, k, s, d, padding, transpose, None if output_padding is None
                          else output_padding[i])
            for i, (size, k, s, d) in enumerate(zip((h, w), kernel, strides, dilations))]
    big_hw, small_hw, pads = zip(*axes)
    return big_hw, small_hw, pads


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("case", [c for c in CASES if c[-1] is None])
def test_conv2d_forward_and_backward(case, activation, dtype):
    batch, h, w, cb, cs, kernel, strides, dilations, padding, _ = case
    big_hw, small_hw, pads = case_geometry(case, transpose=False)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (batch, h, w, cb)).astype(dtype)
    k = rng.uniform(-1, 1, kernel + (cb, cs)).astype(dtype)
    b = rng.uniform(-1, 1, (cs,)).astype(dtype)
    fwd, deriv = ACTIVATIONS[activation]
    z_ref = ref_gather(x.astype(np.float64), k.astype(np.float64), small_hw, strides, dilations,
                       pads) + b
    y, _ = _native.conv2d_forward(x, k, b, list(strides), padding, list(dilations), activation)
    assert_close(y, fwd(z_ref), dtype)

    dy = rng.uniform(-1, 1, y.shape).astype(dtype)
    dz = dy * deriv(z_ref)
    dx, dk, db = _native.conv2d_backward(dy, x, k, y, None, True, list(strides), padding,
                                         list(dilations), activation, threads=2)
    assert_close(dx, ref_scatter(dz, k, big_hw, strides, dilations, pads), dtype)
    assert_close(dk, ref_kernel_grad(x, dz, k.shape, strides, dilations, pads), dtype)
    assert_close(db, dz.sum(axis=(0, 1, 2)), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("case", CASES)
def test_conv2d_transpose_forward_and_backward(case, activation, dtype):
    batch, h, w, cb, cs, kernel, strides, dilations, padding, output_padding = case
    big_hw, small_hw, pads = case_geometry(case, transpose=True)
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, (batch, h, w, cs)).astype(dtype)
    k = rng.uniform(-1, 1, kernel + (cb, cs)).astype(dtype)
    b = rng.uniform(-1, 1, (cb,)).astype(dtype)
    fwd, deriv = ACTIVATIONS[activation]
    z_ref = ref_scatter(x.astype(np.float64), k.astype(np.float64), big_hw, strides, dilations,
                        pads) + b
    op = None if output_padding is None else list(output_padding)
    y, _ = _native.conv2d_transpose_forward(x, k, b, list(strides), padding, op, list(dilations),
                                            activation, threads=3)
    assert_close(y, fwd(z_ref), dtype)

    dy = rng.uniform(-1, 1, y.shape).astype(dtype)
    dz = dy * deriv(z_ref)
    dx, dk, db = _native.conv2d_transpose_backward(dy, x, k, y, None, True, list(strides), padding,
                                                   op, list(dilations), activation, threads=2)
    assert_close(dx, ref_gather(dz, k, small_hw, strides, dilations, pads), dtype)
    assert_close(dk, ref_kernel_grad(dz, x, k.shape, strides, dilations, pads), dtype)
    assert_close(db, dz.sum(axis=(0, 1, 2)), dtype)


def test_results_do_not_depend_on_thread_count():
    rng = np.random.default_rng(2)
    x = rng.uniform(-1, 1, (3, 9, 9, 17)).astype(np.float32)
    k = rng.uniform(-1, 1, (4, 4, 13, 17)).astype(np.float32)
    runs = [_native.conv2d_transpose_forward(x, k, None, [2, 2], "same", threads=t)[0]
            for t in (1, 2, 5)]
    for r in runs[1:]:
        np.testing.assert_array_equal(r, runs[0])


@pytest.mark.parametrize("batch,size,big_c,small_c", [
    (36, 32, 16, 8),     # the forward 36 groups of one image, the backward 6 of 6
    (28, 16, 64, 160),   # a 576 x 160 kernel, packed once per call on one thread
], ids=["many-groups", "kernel-packed-once"])
@pytest.mark.parametrize("transpose", [False, True])
def test_image_groups_one_per_thread(transpose, batch, size, big_c, small_c):
    """A batch of several image groups runs a group per thread, the weight gradients
    summed in waves of two groups per thread (6 backward groups: 4 then 2 on 2 threads),
    the kernel packed once per call where the groups would pack it again enough (here on
    one thread, not on two or three): forward and backward (3 x 3 kernel, elu) match the
    reference and are bit-identical on 1, 2 and 3 threads."""
    rng = np.random.default_rng(4)
    case = (batch, size, size, big_c, small_c, (3, 3), (1, 1), (1, 1), "same", None)
    big_hw, small_hw, pads = case_geometry(case, transpose)
    x = rng.uniform(-1, 1, (batch, size, size, small_c if transpose else big_c)).astype(np.float32)
    k = rng.uniform(-1, 1, (3, 3, big_c, small_c)).astype(np.float32) / np.sqrt(9 * big_c)
    b = rng.uniform(-1, 1, (big_c if transpose else small_c,)).astype(np.float32)
    forward = _native.conv2d_transpose_forward if transpose else _native.conv2d_forward
    backward = _native.conv2d_transpose_backward if transpose else _native.conv2d_backward
    extra = [None] if transpose else []  # conv2d_transpose's output_padding
    fwd, deriv = ACTIVATIONS["elu"]
    x64, k64 = x.astype(np.float64), k.astype(np.float64)
    z_ref = (ref_scatter(x64, k64, big_hw, (1, 1), (1, 1), pads) if transpose
             else ref_gather(x64, k64, small_hw, (1, 1), (1, 1), pads)) + b
    dy = rng.uniform(-1, 1, z_ref.shape).astype(np.float32)
    runs = []
    for threads in (1, 2, 3):
        y, z = forward(x, k, b, [1, 1], "same", *extra, [1, 1], "elu", threads=threads)
        runs.append((y,) + tuple(backward(dy, x, k, y, z, True, [1, 1], "same", *extra, [1, 1],
                                          "elu", threads=threads)))
    for run in runs[1:]:
        for got, first in zip(run, runs[0]):
            np.testing.assert_array_equal(got, first)
    y, dx, dk, db = runs[0]
    dz = dy * deriv(z_ref)
    assert_close(y, fwd(z_ref), np.float32)
    if transpose:
        assert_close(dx, ref_gather(dz, k64, small_hw, (1, 1), (1, 1), pads), np.float32)
        assert_close(dk, ref_kernel_grad(dz, x64, k.shape, (1, 1), (1, 1), pads), np.float32)
    else:
        assert_close(dx, ref_scatter(dz, k64, big_hw, (1, 1), (1, 1), pads), np.float32)
        assert_close(dk, ref_kernel_grad(x64, dz, k.shape, (1, 1), (1, 1), pads), np.float32)
    assert_close(db, dz.sum(axis=(0, 1, 2)), np.float32)


@pytest.mark.parametrize("call,match", [
    (lambda: _native.conv2d_forward(np.ones((1, 2, 2, 1)), np.ones((3, 3, 1, 1)), None),
     "padding 'valid' needs the input height"),
    (lambda: _native.conv2d_forward(np.ones((1, 4, 4, 2)), np.ones((3, 3, 1, 1)), None),
     "in_channels = x's channels 2"),
    (lambda: _native.conv2d_transpose_forward(np.ones((1, 4, 4, 2)), np.ones((3, 3, 1, 1)), None),
     r"\[kh, kw, filters, in_channels\]"),
    (lambda: _native.conv2d_transpose_forward(np.ones((1, 4, 4, 1)), np.ones((3, 3, 1, 1)), None,
                                              [2, 2], "valid", [2, 0]),
     "output_padding must be >= 0 and strictly less than strides"),
    (lambda: _native.conv2d_forward(np.ones((1, 4, 4, 1)), np.ones((3, 3, 1, 1)), None, [0, 1]),
     "strides must be >= 1"),
    (lambda: _native.conv2d_forward(np.ones((1, 4, 4, 1)), np.ones((3, 3, 1, 1)), None, [2, 1],
                                    "same", [1, 2]),
     "strides > 1 is not supported together with dilations > 1"),
    (lambda: _native.conv2d_forward(np.ones((1, 4, 4, 1)), np.ones((3, 3, 1, 1)), None, [1, 1],
                                    "full"),
     "padding must be 'valid' or 'same'"),
    (lambda: _native.conv2d_transpose_forward(np.ones((1, 4, 4, 1)), np.ones((4, 4, 1, 1)), None,
                                              [2, 2], "same", [0, 0]),
     "inconsistent with the input height 4"),
])
def test_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("transpose", [False, True])
def test_long_weight_gradient_split_over_positions(transpose):
    """Few channels and many positions: the weight-gradient GEMM is summed in depth
    slices by several tasks; the result matches the reference for any thread count."""
    rng = np.random.default_rng(3)
    case = (4, 48, 50, 3, 2, (3, 3), (1, 1), (1, 1), "same", None)
    big_hw, small_hw, pads = case_geometry(case, transpose)
    x_channels, y_channels = (2, 3) if transpose else (3, 2)
    x = rng.uniform(-1, 1, (4, 48, 50, x_channels))
    k = rng.uniform(-1, 1, (3, 3, 3, 2))
    backward = _native.conv2d_transpose_backward if transpose else _native.conv2d_backward
    forward = _native.conv2d_transpose_forward if transpose else _native.conv2d_forward
    y, _ = forward(x, k, None, [1, 1], "same")
    dy = rng.uniform(-1, 1, y.shape)
    runs = [backward(dy, x, k, y, None, True, [1, 1], "same", threads=t) for t in (1, 3)]
    for a, b in zip(runs[0], runs[1]):
        np.testing.assert_array_equal(a, b)
    _, dk, db = runs[0]
    big, small = (dy, x) if transpose else (x, dy)
    assert_close(dk, ref_kernel_grad(big, small, k.shape, (1, 1), (1, 1), pads), np.float64)
    assert_close(db, dy.sum(axis=(0, 1, 2)), np.float64)
    assert y.shape[3] == y_channels


@pytest.mark.parametrize("method,isa", [(method, isa) for method in ("lowered", "winograd")
                                        for isa in supported_isas()] + [("implicit", None)])
def test_each_conv_method(method, isa):
    """Each op has implementations picked by shape (lowered: im2col/col2im and plain
    GEMMs; implicit: patches packed straight into the engine's panels; winograd: conv2d's
    float32 forward by minimal filtering, wherever its geometry allows when forced); force
    each and rerun this file's grid through it, the lowered and Winograd ones on each ISA
    (im2col copies runs of taps with the ISA's vectors; Winograd's products are the ISA's
    GEMMs)."""
    env = dict(os.environ, FUSEDLAYERS_CONV_METHOD=method, TF_CPP_MIN_LOG_LEVEL="3")
    if isa:
        env["FUSEDLAYERS_ISA"] = isa
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__,
         "-k", "forward_and_backward"],
        env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert " passed" in done.stdout


# Shapes whose float32 passes the shape rule sends to Winograd's algorithm: F(2x2, 3x3)
# and, for k4 s2, F(3x3, 2x2) or F(4x4, 2x2) on the four stride phases; conv2d_transpose
# as conv2d's input gradient. (transpose, x, kernel [kh, kw, big C, small C], strides,
# padding). The last two sit just above the rule's margin (DCGAN's 8x8x256->128 at the
# quick grid's batch 16; a batch-4 k3 layer on 8x8).
WINOGRAD_SHAPES = {
    "k3-s1-same": (False, (8, 16, 16, 128), (3, 3, 128, 64), (1, 1), "same"),
    "k4-s2-valid": (False, (32, 14, 14, 64), (4, 4, 64, 128), (2, 2), "valid"),
    "transpose-k4-s2-same": (True, (16, 16, 16, 128), (4, 4, 64, 128), (2, 2), "same"),
    "transpose-k4-s2-same-8x8x256": (True, (16, 8, 8, 256), (4, 4, 128, 256), (2, 2), "same"),
    "k3-s1-same-batch4": (False, (4, 8, 8, 128), (3, 3, 128, 128), (1, 1), "same"),
}

WINOGRAD_CHILD = """
import sys, numpy as np
from fusedlayers import _native
x, k, b, dy = (np.load(sys.argv[1] + name + ".npy") for name in ("x", "k", "b", "dy"))
extra = [None] if {transpose} else []
forward = _native.conv2d_transpose_forward if {transpose} else _native.conv2d_forward
backward = _native.conv2d_transpose_backward if {transpose} else _native.conv2d_backward
y, _ = forward(x, k, b, {strides}, {padding!r}, *extra, [1, 1], "elu", threads=2)
grads = backward(dy, x, k, y, None, True, {strides}, {padding!r}, *extra, [1, 1], "elu", threads=2)
for name, value in zip(("y", "dx", "dk", "db"), (y,) + tuple(grads)):
    np.save(sys.argv[1] + "out_" + name + ".npy", value)
"""


def run_winograd_child(tmp_path, method, transpose, strides, padding, **arrays):
    """WINOGRAD_CHILD's outputs (y, dx, dk, db) with FUSEDLAYERS_CONV_METHOD=method."""
    prefix = str(tmp_path) + "/"
    for name, value in arrays.items():
        np.save(prefix + name + ".npy", value)
    env = dict(os.environ, FUSEDLAYERS_CONV_METHOD=method, TF_CPP_MIN_LOG_LEVEL="3")
    code = WINOGRAD_CHILD.format(transpose=transpose, strides=list(strides), padding=padding)
    done = subprocess.run([sys.executable, "-c", code, prefix], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return [np.load(prefix + "out_" + name + ".npy") for name in ("y", "dx", "dk", "db")]


def test_winograd_memory_bound_falls_back(tmp_path):
    """A kernel whose transform would exceed Winograd's memory bound (16 x 1024 phase
    channels x 512 filters) runs another method even when Winograd is forced: the same
    bits as the lowered method."""
    rng = np.random.default_rng(6)
    arrays = dict(x=rng.uniform(-1, 1, (2, 6, 6, 256)).astype(np.float32),
                  k=rng.uniform(-0.05, 0.05, (4, 4, 256, 512)).astype(np.float32),
                  b=rng.uniform(-1, 1, (512,)).astype(np.float32),
                  dy=rng.uniform(-1, 1, (2, 2, 2, 512)).astype(np.float32))
    forced = run_winograd_child(tmp_path, "winograd", False, (2, 2), "valid", **arrays)
    lowered = run_winograd_child(tmp_path, "lowered", False, (2, 2), "valid", **arrays)
    for got, expected in zip(forced, lowered):
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("shape", sorted(WINOGRAD_SHAPES))
def test_winograd_by_shape(shape, tmp_path):
    """The shape rule picks Winograd here: forward and backward match the float64
    reference, are bit-identical on 1, 2 and 3 threads (groups one after another, and a
    group per thread with the kernel's gradient summed in waves), equal the forced
    Winograd method's outputs bit for bit and differ from the lowered method's (a
    different summation)."""
    transpose, x_shape, k_shape, strides, padding = WINOGRAD_SHAPES[shape]
    rng = np.random.default_rng(5)
    x = rng.uniform(-1, 1, x_shape).astype(np.float32)
    k = (rng.uniform(-1, 1, k_shape) / np.sqrt(np.prod(k_shape[:3]))).astype(np.float32)
    b = rng.uniform(-1, 1, k_shape[2 if transpose else 3]).astype(np.float32)
    case = x_shape[:3] + k_shape[2:] + (k_shape[:2], strides, (1, 1), padding, None)
    big_hw, small_hw, pads = case_geometry(case, transpose)
    x64, k64 = x.astype(np.float64), k.astype(np.float64)
    gather = lambda big, kernel: ref_gather(big, kernel, small_hw, strides, (1, 1), pads)
    scatter = lambda small, kernel: ref_scatter(small, kernel, big_hw, strides, (1, 1), pads)
    z_ref = (scatter(x64, k64) if transpose else gather(x64, k64)) + b
    dy = rng.uniform(-1, 1, z_ref.shape).astype(np.float32)
    forward = _native.conv2d_transpose_forward if transpose else _native.conv2d_forward
    backward = _native.conv2d_transpose_backward if transpose else _native.conv2d_backward
    extra = [None] if transpose else []  # conv2d_transpose's output_padding
    runs = []
    for threads in (1, 2, 3):
        y, _ = forward(x, k, b, list(strides), padding, *extra, [1, 1], "elu", threads=threads)
        runs.append((y,) + tuple(backward(dy, x, k, y, None, True, list(strides), padding, *extra,
                                          [1, 1], "elu", threads=threads)))
    for run in runs[1:]:
        for got, first in zip(run, runs[0]):
            np.testing.assert_array_equal(got, first)
    fwd, deriv = ACTIVATIONS["elu"]
    dz = dy * deriv(z_ref)
    y, dx, dk, db = runs[0]
    assert_close(y, fwd(z_ref), np.float32)
    if transpose:
        assert_close(dx, gather(dz, k64), np.float32)
        assert_close(dk, ref_kernel_grad(dz, x64, k.shape, strides, (1, 1), pads), np.float32)
    else:
        assert_close(dx, scatter(dz, k64), np.float32)
        assert_close(dk, ref_kernel_grad(x64, dz, k.shape, strides, (1, 1), pads), np.float32)
    assert_close(db, dz.sum(axis=(0, 1, 2)), np.float32)

    forced = {method: run_winograd_child(tmp_path, method, transpose, strides, padding, x=x, k=k,
                                         b=b, dy=dy)
              for method in ("winograd", "lowered")}
    for got, winograd, lowered in zip(runs[0], forced["winograd"], forced["lowered"]):
        np.testing.assert_array_equal(got, winograd)
        assert not np.array_equal(got, lowered)
