"""100 000 forward+backward calls of a small fused layer keep resident memory flat.

Runs in a fresh process, reading VmRSS from /proc/self/status after a warm-up (caches,
allocator pools and the traced function settle) and again at the end.
"""

import json
import subprocess
import sys
import textwrap

CALLS = 100_000
WARMUP_CALLS = 5_000
# A leak of a single small tensor (or its ~100-byte TF bookkeeping) per call would add
# well over this in 100 000 calls; allocator noise after the warm-up stays far below.
MAX_RSS_GROWTH_KIB = 8 * 1024

CHILD = textwrap.dedent(f"""
    import json, os
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import tensorflow as tf
    import fusedlayers as fl

    def rss_kib():
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))

    layer = fl.Dense(8, activation="gelu")
    x = tf.random.uniform((4, 16))
    layer.build(x.shape)

    @tf.function
    def steps(n):
        # Each iteration is one forward (FusedDense) and one backward (FusedDenseGrad) call.
        # Summed in float64: 100 000 float32 additions of one value can drift by more
        # than the check's tolerance, depending on that value's bits.
        total = tf.constant(0.0, tf.float64)
        for _ in tf.range(n):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = layer(x)
            total += tf.cast(tf.reduce_sum(tape.gradient(y, x)), tf.float64)
        return total

    one = float(steps(tf.constant(1)))
    steps(tf.constant({WARMUP_CALLS}))
    before = rss_kib()
    total = float(steps(tf.constant({CALLS})))
    print(json.dumps({{"before": before, "after": rss_kib(), "one": one, "total": total}}))
""")


def test_rss_stays_flat_over_100k_calls(tmp_path):
    script = tmp_path / "endurance_child.py"  # a file: autograph reads the loop's source
    script.write_text(CHILD)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    growth = report["after"] - report["before"]
    assert growth <= MAX_RSS_GROWTH_KIB, f"RSS grew by {growth} KiB over {CALLS} calls: {report}"
    # The loop really made CALLS calls: its sum is CALLS times one call's.
    expected = CALLS * report["one"]
    assert abs(report["total"] - expected) <= 1e-3 * abs(expected) + 1.0, report
