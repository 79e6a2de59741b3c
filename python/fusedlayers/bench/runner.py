"""Runs one case: build both sides, check they agree, then time them alternately."""

import numpy as np
import tensorflow as tf

from fusedlayers.bench.timing import time_alternating
from fusedlayers.bench.workloads import Unavailable

# Largest |fused - reference| allowed, relative to max |reference| of each output. The
# reference is stock itself for float32 and stock's float32 computation from the same
# bfloat16 weights and inputs for bfloat16, whose 8 significant bits give ~0.4% per
# rounding (stock's own bfloat16 bias gradients are off by tens of percent: reported).
TOLERANCE = {"float32": 1e-4, "bfloat16": 3e-2}


def wrap(contest, mode):
    """(fused, stock) callables for the mode: eager as is, else tf.function, stock XLA in 'xla'."""
    if mode == "eager":
        return contest.fused, contest.stock
    return tf.function(contest.fused), tf.function(contest.stock, jit_compile=(mode == "xla"))


def _as_list(outputs):
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


def max_relative_error(fused_outputs, expected_outputs):
    """max over outputs of max|fused - expected| / max|expected|, computed in float64."""
    fused_outputs, expected_outputs = _as_list(fused_outputs), _as_list(expected_outputs)
    if len(fused_outputs) != len(expected_outputs):
        raise ValueError(f"fused returned {len(fused_outputs)} outputs, the reference "
                         f"{len(expected_outputs)}")
    worst = 0.0
    for i, (f, s) in enumerate(zip(fused_outputs, expected_outputs)):
        f = np.asarray(tf.cast(f, tf.float64))
        s = np.asarray(tf.cast(s, tf.float64))
        if f.shape != s.shape:
            raise ValueError(f"output {i}: fused shape {f.shape}, reference shape {s.shape}")
        if not np.all(np.isfinite(f)):
            return float("inf")
        scale = max(float(np.max(np.abs(s), initial=0.0)), np.finfo(np.float32).tiny)
        worst = max(worst, float(np.max(np.abs(f - s), initial=0.0)) / scale)
    return worst


def _result(case, status, message="", **fields):
    return {
        "id": case.id, "group": case.group, "layer": case.layer, "workload": case.workload,
        "batch": case.batch, "dtype": case.dtype, "activation": case.activation,
        "mode": case.mode, "pass": case.pass_, "flops": case.flops(), "status": status,
        "message": message, **fields,
    }


def run_case(case, budget, peak_gflops, seed=0):
    """The case's result dict: status ok (timed), skipped (op missing) or failed (not timed)."""
    rng = np.random.default_rng(seed)
    try:
        contest = case.contest(rng)
        fused, stock = wrap(contest, case.mode)
        fused_outputs = fused(*contest.args)
        stock_outputs = stock(*contest.args)  # also stock's trace or XLA compile
        expected = stock_outputs
        if contest.reference is not contest.stock:
            expected = contest.reference(*contest.reference_args)
        error = max_relative_error(fused_outputs, expected)
        stock_error = max_relative_error(stock_outputs, expected)
    except Unavailable as e:
        return _result(case, "skipped", str(e))
    except (tf.errors.OpError, ValueError, TypeError) as e:
        return _result(case, "failed", f"{type(e).__name__}: {str(e).splitlines()[0]}")
    tolerance = TOLERANCE[case.dtype]
    if not error <= tolerance:
        return _result(case, "failed", f"outputs differ: max relative error {error:.2e} > "
                                       f"{tolerance:.0e}", max_rel_error=error,
                       stock_max_rel_error=stock_error)
    summary = time_alternating(fused, stock, contest.args, budget).summary()
    fused_gflops = case.flops() / summary["fused_s"] / 1e9
    stock_gflops = case.flops() / summary["stock_s"] / 1e9
    return _result(
        case, "ok", max_rel_error=error, stock_max_rel_error=stock_error, **summary,
        fused_gflops=fused_gflops, stock_gflops=stock_gflops,
        fused_peak_fraction=fused_gflops / peak_gflops,
        stock_peak_fraction=stock_gflops / peak_gflops,
    )
