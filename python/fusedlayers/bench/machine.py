"""The machine a run measured: CPU, cores, versions, oneDNN, load, and its fp32 peak."""

import datetime
import os
import platform
import sys
import time

import keras
import numpy as np
import tensorflow as tf

import fusedlayers as fl
from fusedlayers.bench.timing import seconds_per_call


def _cpu_model(info):
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return info.get("cpu") or platform.processor() or "unknown"


def _onednn():
    """Whether stock TensorFlow runs its oneDNN kernels, as TensorFlow itself decided: by
    default only on CPUs with VNNI (AVX-512 or AVX), AVX-512 BF16 or AMX, so an AVX2-only
    CPU runs Eigen's unless TF_ENABLE_ONEDNN_OPTS=1; TF_ENABLE_ONEDNN_OPTS=0 turns it off."""
    value = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    setting = "TF_ENABLE_ONEDNN_OPTS unset" if value is None else f"TF_ENABLE_ONEDNN_OPTS={value}"
    try:
        from tensorflow.python.util import _pywrap_util_port
        on = _pywrap_util_port.IsMklEnabled()
    except (ImportError, AttributeError):  # a TensorFlow without the query: the setting alone
        if value is None:
            return f"unknown ({setting})"
        on = value.strip().lower() not in ("0", "false", "off")
    return f"{'on' if on else 'off: Eigen kernels'} ({setting})"


def usable_cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def describe(argv):
    """The header of a run: what ran, where, with which versions and under which load."""
    info = fl.build_info()
    return {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(["fusedlayers-bench", *argv]),
        "cpu": _cpu_model(info),
        "kernel_isa": info.get("kernel_isa"),
        "bf16_kernel": info.get("bf16_kernel"),
        "cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "python": platform.python_version(),
        "onednn": _onednn(),
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads() or "all",
        "platform": f"{platform.system()} {platform.machine()}",
        "build_info": info,
        "executable": sys.executable,
    }


def _matmul_peak_gflops(n=2048, repeats=5):
    """A lower bound of the fp32 peak: the best of a few large tf.matmul calls."""
    a = tf.random.normal([n, n])
    b = tf.random.normal([n, n])
    matmul = tf.function(tf.matmul)
    matmul(a, b).numpy()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a, b).numpy()
        best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best / 1e9


def measure_call_floor(batches=20, calls=100):
    """{"function", "eager"}: ms per call of a tf.function that only computes x + 1, and of
    that one op in eager mode (the median of batches of calls, as the cases are timed).
    Every case in those modes pays about as much per call on both sides, which bounds
    the speed-up of layers whose work is smaller."""
    x = tf.zeros([4])
    add_one = tf.function(lambda v: v + 1)
    floors = {}
    for mode, call in (("function", add_one), ("eager", lambda v: v + 1)):
        call(x)
        ms = [seconds_per_call(call, (x,), calls) * 1e3 for _ in range(batches)]
        floors[mode] = round(float(np.median(ms)), 4)
    return floors


def measure_peak():
    """{"gflops", "method"}: the machine's fp32 peak over all usable cores.

    Uses fusedlayers' native FMA probe when this build has it, else large tf.matmul calls.
    """
    cores = usable_cores()
    probe = getattr(fl._native, "measure_peak_gflops", None)
    if probe is not None:
        return {"gflops": float(probe(threads=cores, seconds=0.2)),
                "method": f"fusedlayers._native.measure_peak_gflops(threads={cores})"}
    return {"gflops": _matmul_peak_gflops(),
            "method": "best of 5 tf.matmul 2048×2048×2048 fp32 (a lower bound: no native probe "
                      "in this build)"}
