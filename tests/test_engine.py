"""The GEMM engine through the pybind11 harness: every block edge, every ISA path, determinism."""

import functools
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from fusedlayers import _native


def supported_isas():
    f = _native.cpu_features()
    isas = ["portable"]
    if f["avx2"] and f["fma"]:
        isas.append("avx2")
    if f["avx512f"] and f["avx512bw"] and f["avx512vl"] and f["avx512dq"] and f["fma"]:
        isas.append("avx512")
    return isas


def child_env(**overrides):
    """This environment for a child process, less the kernel choices a whole run may have
    forced (FUSEDLAYERS_ISA=avx2 to run other tests on a lower ISA): the test decides."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("FUSEDLAYERS_ISA", "FUSEDLAYERS_BF16_KERNEL")}
    env.update(TF_CPP_MIN_LOG_LEVEL="3", **overrides)
    return env


@functools.lru_cache(maxsize=None)
def best_bf16_kernel():
    """The bf16 kernel the engine picks with nothing forced, asked of a fresh process
    (this one may run under a forced ISA)."""
    done = subprocess.run([sys.executable, "-c", "from fusedlayers import _native; print(_native.bf16_kernel())"],
                          env=child_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()[-1]


def bf16_kernel_for(isa):
    """The bf16 kernel the engine picks under `isa` (see gemm_bf16_kernel): the best
    one for avx512, none (widen) below."""
    return best_bf16_kernel() if isa == "avx512" else "widen"


def supported_bf16_kernels():
    """Every bf16 path this machine can be forced onto: the best one and those below it."""
    order = ["widen", "dpbf16", "amx"]
    return order[:order.index(bf16_kernel_for(supported_isas()[-1])) + 1]


def edge_sizes(block):
    """1, around one and two micro-tiles, and just past the cache blocks."""
    mr, nr = block["mr"], block["nr"]
    return {
        "m": sorted({1, mr - 1, mr, mr + 1, 2 * mr + 1, block["mc"] + 1}),
        "n": sorted({1, nr - 1, nr, nr + 1, 2 * nr + 3, block["nc"] + 1}),
        "k": sorted({1, 2, 7, block["kc"], block["kc"] + 1, 2 * block["kc"] + 5}),
    }


def edge_shapes(block):
    """Each edge of one dimension, with the other two small or odd."""
    sizes = edge_sizes(block)
    shapes = [(m, 5, 3) for m in sizes["m"]]
    shapes += [(3, 5, n) for n in sizes["n"]]
    shapes += [(13, k, 33) for k in sizes["k"]]
    shapes += [(block["mr"] + 1, block["kc"] + 1, block["nr"] + 1), (0, 3, 4), (3, 0, 4), (3, 4, 0)]
    return shapes


def check_gemm(a, b, **kwargs):
    expected = a.astype(np.float64) @ b.astype(np.float64)
    actual = _native.gemm(a, b, **kwargs)
    assert actual.dtype == a.dtype and actual.shape == expected.shape
    eps = np.finfo(a.dtype).eps
    tol = 4 * eps * max(a.shape[1], 1) * max(1.0, float(np.abs(expected).max(initial=0)))
    np.testing.assert_allclose(actual, expected, rtol=0, atol=tol)
    return actual


def run_edge_checks():
    """Every edge of the dispatched micro-kernel, both dtypes, every engine path."""
    rng = np.random.default_rng(7)
    for dtype in (np.float32, np.float64):
        block = _native.gemm_blocking(np.dtype(dtype).name)
        for m, k, n in edge_shapes(block):
            a = rng.uniform(-1, 1, (m, k)).astype(dtype)
            b = rng.uniform(-1, 1, (k, n)).astype(dtype)
            reference = check_gemm(a, b)
            for threads in (2, 3):
                for in_output in (True, False):
                    for callback in (False, True):
                        actual = check_gemm(a, b, threads=threads, accumulate_in_output=in_output,
                                            callback_packing=callback)
                        # One summation order whatever the path and the thread count.
                        np.testing.assert_array_equal(actual, reference)


def run_strided_checks():
    """Operands that are transposed views or have gaps between elements."""
    rng = np.random.default_rng(8)
    base_a = rng.uniform(-1, 1, (70, 90)).astype(np.float32)
    base_b = rng.uniform(-1, 1, (200, 200)).astype(np.float32)
    for a in (base_a, base_a.T, base_a[::2, ::3], base_a.T[1::2, ::-1]):
        k = a.shape[1]
        for b in (base_b[:k, :70], base_b.T[:k, :41], base_b[::2, ::3][:k], base_b[::-1][:k, 5:38]):
            check_gemm(a, b, threads=2)


def run_in_place_checks():
    """Operands read in place instead of packed (A with few columns of C, B with few
    rows; with up to 4 rows, B in strips; with rows of B 8 KiB apart, in depth steps of
    64 with the sums parked between them, A packed or in place) and C computed transposed
    (few rows, depth-contiguous B): each gives the packed path's bits."""
    rng = np.random.default_rng(10)
    for dtype in (np.float32, np.float64):
        block = _native.gemm_blocking(np.dtype(dtype).name)
        kc, nr = block["kc"], block["nr"]
        for m, k, n, b_transposed in [(40, kc + 5, 33, False), (20, kc + 1, 2 * nr + 3, False),
                                      (37, 2 * kc + 1, 3 * nr + 5, True), (16, 7, 70, True),
                                      (64, kc, 64, True), (5, 9, 2 * nr + 1, True),
                                      (1, kc + 5, 512 + nr + 3, False), (1, 2 * kc + 1, 300, False),
                                      (1, 2 * kc + 3, 2 * 2048 + nr + 5, False),
                                      (1, kc + 7, 2 * nr - 3, False), (3, 2 * kc + 1, 2 * nr + 7, False),
                                      (7, kc + 3, 2048 + nr + 5, False), (13, kc + 3, 2048 + 5, False),
                                      (30, 2 * kc + 7, 2048 + nr + 3, False),
                                      (25, kc + 70, 2048 + 2 * nr, False), (40, 2 * kc + 5, 40, None)]:
            a = rng.uniform(-1, 1, (m, k)).astype(dtype)
            if b_transposed is None:  # few columns of rows 2100 apart: A read in place too
                b = rng.uniform(-1, 1, (k, 2100)).astype(dtype)[:, 7:7 + n]
            else:
                b = rng.uniform(-1, 1, (n, k)).astype(dtype).T if b_transposed else (
                    rng.uniform(-1, 1, (k, n)).astype(dtype))
            packed = check_gemm(a, b, callback_packing=True)
            for threads in (1, 3):
                for in_output in (True, False):
                    actual = check_gemm(a, b, threads=threads, accumulate_in_output=in_output)
                    np.testing.assert_array_equal(actual, packed)


def run_dense_checks():
    """The fused dense kernels (prologue packing, ones-row bias gradient, in-place
    epilogue) at micro-tile edges, against numpy."""
    rng = np.random.default_rng(9)
    block = _native.gemm_blocking("float32")
    for m, k, n in [(1, 1, 1), (block["mr"] + 1, 7, block["nr"] + 1), (33, block["kc"] + 1, 70)]:
        x = rng.uniform(-1, 1, (m, k)).astype(np.float32)
        w = rng.uniform(-1, 1, (k, n)).astype(np.float32)
        bias = rng.uniform(-1, 1, n).astype(np.float32)
        dy = rng.uniform(-1, 1, (m, n)).astype(np.float32)
        z = x.astype(np.float64) @ w + bias
        y, _ = _native.dense_forward(x, w, bias, "relu", threads=2)
        np.testing.assert_allclose(y, np.maximum(z, 0), rtol=0, atol=1e-5 * max(k, 1))
        dx, dw, db = _native.dense_backward(dy, x, w, y, None, True, "relu", threads=2)
        dz = dy * (y > 0)
        np.testing.assert_allclose(dx, dz @ w.T.astype(np.float64), rtol=0, atol=1e-5 * n)
        np.testing.assert_allclose(dw, x.T.astype(np.float64) @ dz, rtol=0, atol=1e-5 * m)
        np.testing.assert_allclose(db, dz.sum(0), rtol=0, atol=1e-5 * m)


# The batch sizes whose backward runs in one pass over W (kMaxDotOuterRows), and the dW
# size from which that pass streams dW past the caches (kStreamedDwMinBytes).
ONE_PASS_MAX_BATCH = 8
STREAMED_DW_MIN_BYTES = 32 << 20


def run_one_pass_backward_checks():
    """The dense backward of a batch of 1-8 rows (dx and dW in one pass over W) and just
    past it (two GEMMs): at every vector edge of the rows, with dW streamed (rows aligned
    and not), against float64; dW with the engine's bits (one FMA per batch row from
    zero, as _native.gemm sums xᵀ·dy); the same bits on any thread count."""
    rng = np.random.default_rng(13)

    def within(actual, expected, tol):  # assert_allclose's test, fast on 8M elements
        error = float(np.max(np.abs(actual - expected), initial=0))
        assert error <= tol, (actual.shape, error, tol)

    for dtype in (np.float32, np.float64):
        lanes = 64 // np.dtype(dtype).itemsize
        eps = np.finfo(dtype).eps
        streamed_n = 4 * lanes + 4  # rows of dW not all aligned to the vector
        streamed_k = -(-STREAMED_DW_MIN_BYTES // (streamed_n * np.dtype(dtype).itemsize))
        shapes = [(m, 3, n) for m in range(1, ONE_PASS_MAX_BATCH + 2)
                  for n in (1, lanes - 1, lanes, lanes + 1, 4 * lanes + 3, 9 * lanes + 5)]
        shapes += [(1, 700, 1000), (ONE_PASS_MAX_BATCH, 611, 901), (3, streamed_k, streamed_n)]
        for m, k, n in shapes:
            x = rng.uniform(-1, 1, (m, k)).astype(dtype)
            w = rng.uniform(-1, 1, (k, n)).astype(dtype)
            dy = rng.uniform(-1, 1, (m, n)).astype(dtype)
            y = (x.astype(np.float64) @ w).astype(dtype)
            results = [_native.dense_backward(dy, x, w, y, None, True, "relu", threads=t)
                       for t in (1, 2, 3)]
            for other in results[1:]:
                assert all(np.array_equal(got, want) for got, want in zip(other, results[0]))
            dx, dw, db = results[0]
            dz = dy.astype(np.float64) * (y > 0)
            within(dx, dz @ w.T.astype(np.float64), 4 * eps * n)
            within(dw, x.T.astype(np.float64) @ dz, 4 * eps * m)
            within(db, dz.sum(0), 4 * eps * m)
            _, dw_linear, _ = _native.dense_backward(dy, x, w, y, None, False, "linear", threads=2)
            assert np.array_equal(dw_linear, _native.gemm(np.ascontiguousarray(x.T), dy))


def to_bf16_bits(x):
    """float array -> its bfloat16 bits (uint16), rounded to nearest even."""
    u = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def from_bf16_bits(bits):
    return (np.asarray(bits).astype(np.uint32) << 16).view(np.float32)


def check_gemm_bf16(a_bits, b_bits, **kwargs):
    """The engine's bf16 product against float64 of the same bf16 values: products of
    bf16 numbers are exact in float32, so only the float32 summation errs."""
    expected = from_bf16_bits(a_bits).astype(np.float64) @ from_bf16_bits(b_bits).astype(np.float64)
    actual = _native.gemm_bf16(a_bits, b_bits, **kwargs)
    assert actual.dtype == np.float32 and actual.shape == expected.shape
    eps = np.finfo(np.float32).eps
    scale = max(1.0, float((np.abs(from_bf16_bits(a_bits)).astype(np.float64)
                            @ np.abs(from_bf16_bits(b_bits))).max(initial=0)))
    tol = 4 * eps * max(a_bits.shape[1], 1) * scale
    np.testing.assert_allclose(actual, expected, rtol=0, atol=tol)
    return actual


def bf16_block():
    """Block sizes of the bf16 path: its own, or float32's when it widens."""
    return _native.gemm_blocking("bfloat16" if _native.bf16_kernel() != "widen" else "float32")


def run_bf16_checks():
    """bfloat16 through the engine (pair-interleaved panels or widened, whichever this
    process runs): every block edge with odd depths, plain and callback packing, A read
    in place, B read in place as row pairs (C of at most 64 rows), transposed and strided
    operands, one summation order for all of them and any thread count."""
    rng = np.random.default_rng(12)
    block = bf16_block()
    mr, nr, kc = block["mr"], block["nr"], block["kc"]
    shapes = edge_shapes(block)
    shapes += [(13, k, 33) for k in (3, 5, kc - 1, 2 * kc - 1, 2 * kc + 1)]
    shapes += [(2 * mr + 1, 2 * kc + 3, 2 * nr + 5), (40, kc + 1, 20), (5, 2 * kc + 1, 3 * nr + 1)]
    # At most 64 rows: B read in place, a depth pair's rows interleaved in registers.
    shapes += [(64, 2 * kc + 1, 2 * nr + 5), (65, kc + 3, 2 * nr)]
    for m, k, n in shapes:
        a = to_bf16_bits(rng.uniform(-1, 1, (m, k)))
        b = to_bf16_bits(rng.uniform(-1, 1, (k, n)))
        reference = check_gemm_bf16(a, b)
        for threads in (2, 3):
            for in_output in (True, False):
                for callback in (False, True):
                    actual = check_gemm_bf16(a, b, threads=threads, accumulate_in_output=in_output,
                                             callback_packing=callback)
                    np.testing.assert_array_equal(actual, reference)
        # B given transposed (rows contiguous in depth), the layout of dx = dz·Wᵀ.
        bt = np.ascontiguousarray(b.T).T
        np.testing.assert_array_equal(check_gemm_bf16(a, bt, threads=2), reference)
    base_a = to_bf16_bits(rng.uniform(-1, 1, (70, 91)))
    base_b = to_bf16_bits(rng.uniform(-1, 1, (201, 200)))
    for a in (base_a, base_a.T, base_a[::2, ::3], base_a.T[1::2, ::-1], base_a[:, 1:]):
        k = a.shape[1]
        for b in (base_b[:k, :70], base_b.T[:k, :41], base_b[::2, ::3][:k], base_b[::-1][:k, 5:38],
                  base_b[1:k + 1, 1:]):
            check_gemm_bf16(a, b, threads=2)


def test_bf16_rejects_non_matrices():
    a = np.zeros((3, 4), np.uint16)
    with pytest.raises(ValueError, match="gemm needs"):
        _native.gemm_bf16(a, np.zeros((5, 2), np.uint16))


CHECKS = {"edges": run_edge_checks, "strided": run_strided_checks, "in_place": run_in_place_checks,
          "dense": run_dense_checks, "one_pass_backward": run_one_pass_backward_checks,
          "bf16": run_bf16_checks}


def run_checks_in_child(env_overrides, names):
    done = subprocess.run([sys.executable, __file__, *names], env=child_env(**env_overrides),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("isa", supported_isas())
def test_engine_on_each_isa(isa):
    """All checks in one fresh process (the ISA is chosen once per process) with the
    engine forced to `isa`."""
    report = run_checks_in_child({"FUSEDLAYERS_ISA": isa}, sorted(CHECKS))
    assert report == {"isa": isa, "bf16_kernel": bf16_kernel_for(isa), "passed": sorted(CHECKS)}


@pytest.mark.parametrize("kernel", supported_bf16_kernels())
def test_bf16_checks_with_each_kernel_forced(kernel):
    report = run_checks_in_child({"FUSEDLAYERS_BF16_KERNEL": kernel}, ["bf16"])
    assert report == {"isa": supported_isas()[-1], "bf16_kernel": kernel, "passed": ["bf16"]}


def bf16_pairs_by_reuse(**env):
    """{reuse: runs on pairs} for a fresh process with `env`."""
    code = ("import json; from fusedlayers import _native; "
            "print(json.dumps([_native.bf16_kernel(), _native.cpu_features()['vendor'], "
            "{r: _native.bf16_runs_on_pairs(r) for r in (1, 64, 65, 4096)}]))")
    done = subprocess.run([sys.executable, "-c", code], env=child_env(**env), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    kernel, vendor, pairs = json.loads(done.stdout.splitlines()[-1])
    return kernel, vendor, {int(r): on_pairs for r, on_pairs in pairs.items()}


def test_bf16_products_on_pairs_by_kernel_vendor_and_rows():
    """Which bf16 products take the pairs kernel: every one with AMX; with vdpbf16ps every
    one on AMD (twice the FMA's flops there) but only those with at most 64 rows per weight
    on Intel (0.69x the FMA's flops); none when widening; every one when dpbf16 is forced."""
    kernel, vendor, pairs = bf16_pairs_by_reuse()
    if kernel == "widen":
        assert not any(pairs.values())
    elif kernel == "amx" or vendor == "AuthenticAMD":
        assert all(pairs.values()), pairs
    else:
        assert pairs == {1: True, 64: True, 65: False, 4096: False}
    if "dpbf16" in supported_bf16_kernels():
        kernel, _, pairs = bf16_pairs_by_reuse(FUSEDLAYERS_BF16_KERNEL="dpbf16")
        assert kernel == "dpbf16" and all(pairs.values()), pairs
    _, _, pairs = bf16_pairs_by_reuse(FUSEDLAYERS_BF16_KERNEL="widen")
    assert not any(pairs.values())


def test_bf16_kernel_forced_where_missing_widens_with_a_warning():
    env = child_env(FUSEDLAYERS_ISA="avx2", FUSEDLAYERS_BF16_KERNEL="dpbf16")
    done = subprocess.run([sys.executable, "-c", "from fusedlayers import _native; print(_native.bf16_kernel())"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == "widen"
    assert "FUSEDLAYERS_BF16_KERNEL=dpbf16 is not available here" in done.stderr


@pytest.mark.parametrize("kernel", supported_bf16_kernels())
def test_bf16_layers_with_each_kernel_forced(kernel):
    """The bfloat16 dense and convolution op tests (forward, gradients, prologue and
    ones-row packing as bf16) with the bf16 path forced either way."""
    here = os.path.dirname(os.path.abspath(__file__))
    env = child_env(FUSEDLAYERS_BF16_KERNEL=kernel)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-k", "bfloat16",
         os.path.join(here, "test_dense_op.py"), os.path.join(here, "test_conv2d.py"),
         os.path.join(here, "test_conv2d_transpose.py")],
        env=env, capture_output=True, text=True, timeout=600, cwd=os.path.dirname(here))
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert " passed" in done.stdout


@pytest.mark.parametrize("isa", supported_isas())
def test_small_batch_dense_gradients_on_each_isa(isa):
    """The small-batch kernels' TensorFlow tests (the one-pass backward on float32, float64
    and bfloat16 storage, the bfloat16 strip forward, bfloat16 rounding, NaN and inf) with
    each ISA's kernels forced."""
    here = os.path.dirname(os.path.abspath(__file__))
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-k",
         "small_batch or rounds", os.path.join(here, "test_dense_op.py")],
        env=child_env(FUSEDLAYERS_ISA=isa), capture_output=True, text=True, timeout=600,
        cwd=os.path.dirname(here))
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert " passed" in done.stdout


def test_unknown_isa_name_falls_back_to_the_best_with_a_warning():
    env = child_env(FUSEDLAYERS_ISA="sse9")
    done = subprocess.run([sys.executable, "-c", "from fusedlayers import _native; print(_native.kernel_isa())"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == supported_isas()[-1]
    assert "FUSEDLAYERS_ISA must be one of" in done.stderr


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_identical_bits_for_any_thread_count(dtype):
    rng = np.random.default_rng(10)
    block = _native.gemm_blocking(np.dtype(dtype).name)
    for m, k, n in [(5, 3 * block["kc"] + 7, 2 * block["nr"] + 1), (2 * block["mr"] + 3, 700, 301)]:
        a = rng.standard_normal((m, k)).astype(dtype)
        b = rng.standard_normal((k, n)).astype(dtype)
        results = [_native.gemm(a, b, threads=t) for t in (1, 2, 3, 4, 1)]
        for r in results[1:]:
            np.testing.assert_array_equal(r, results[0])


def test_bf16_identical_bits_for_any_thread_count():
    rng = np.random.default_rng(13)
    block = bf16_block()
    for m, k, n in [(5, 3 * block["kc"] + 7, 2 * block["nr"] + 1), (2 * block["mr"] + 3, 701, 301)]:
        a = to_bf16_bits(rng.standard_normal((m, k)))
        b = to_bf16_bits(rng.standard_normal((k, n)))
        results = [_native.gemm_bf16(a, b, threads=t) for t in (1, 2, 3, 4, 1)]
        for r in results[1:]:
            np.testing.assert_array_equal(r, results[0])


def test_dense_identical_bits_for_any_thread_count():
    rng = np.random.default_rng(11)
    x = rng.standard_normal((37, 300)).astype(np.float32)
    w = rng.standard_normal((300, 130)).astype(np.float32)
    bias = rng.standard_normal(130).astype(np.float32)
    dy = rng.standard_normal((37, 130)).astype(np.float32)
    outs = []
    for threads in (1, 2, 3, 4):
        y, z = _native.dense_forward(x, w, bias, "gelu", threads=threads)
        outs.append((y, z) + tuple(_native.dense_backward(dy, x, w, y, z, True, "gelu", threads=threads)))
    for other in outs[1:]:
        for got, want in zip(other, outs[0]):
            np.testing.assert_array_equal(got, want)


def test_peak_probe_measures_a_positive_rate():
    one = _native.measure_peak_gflops(threads=1, seconds=0.05)
    assert isinstance(one, float) and one > 0
    with pytest.raises(ValueError, match="threads"):
        _native.measure_peak_gflops(threads=0)
    with pytest.raises(ValueError, match="seconds"):
        _native.measure_peak_gflops(seconds=-1.0)


if __name__ == "__main__":
    names = sorted(sys.argv[1:] or CHECKS)
    for name in names:
        CHECKS[name]()
    print(json.dumps({"isa": _native.kernel_isa(), "bf16_kernel": _native.bf16_kernel(),
                      "passed": names}))
