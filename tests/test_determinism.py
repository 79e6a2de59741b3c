"""Identical inputs give bitwise-identical outputs and gradients, across runs and thread counts.

Each run is a fresh process (determinism_child.py) with 1, 2 or 4 intra-op threads, since
TensorFlow fixes its thread pool at initialization.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "determinism_child.py")


def run_child(threads, out_dir, tag):
    path = str(out_dir / f"{tag}.npz")
    proc = subprocess.run([sys.executable, CHILD, str(threads), path], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, f"child with {threads} threads failed:\n{proc.stderr[-3000:]}"
    with np.load(path) as data:
        return dict(data)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("determinism")
    return {tag: run_child(threads, out_dir, tag)
            for tag, threads in (("1", 1), ("2", 2), ("4", 4), ("4-again", 4))}


def assert_bitwise_equal(a, b, what):
    assert a.keys() == b.keys()
    differing = [k for k in a if not np.array_equal(a[k], b[k])]
    assert not differing, f"{what}: results differ bitwise for {differing}"


def test_results_cover_dense_and_conv_forward_and_gradients(runs):
    keys = runs["1"].keys()
    for name in ("y", "dx", "dkernel", "dbias"):
        assert f"dense/float32/gelu/{name}" in keys and f"dense_layer/{name}" in keys
        assert f"conv2d/float32/{name}" in keys and f"conv2d_transpose/bfloat16/{name}" in keys
    assert all(v.size > 0 for v in runs["1"].values())


def test_identical_across_runs(runs):
    assert_bitwise_equal(runs["4"], runs["4-again"], "two runs with 4 threads")


@pytest.mark.parametrize("threads", ["2", "4"])
def test_identical_across_thread_counts(runs, threads):
    assert_bitwise_equal(runs["1"], runs[threads], f"1 thread vs {threads} threads")
