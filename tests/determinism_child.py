"""Child of test_determinism: computes fixed workloads with N intra-op threads, saves them.

Usage: python determinism_child.py THREADS OUT.npz. The thread count is set before
TensorFlow initializes its runtime, which is the only time it can be.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def random(rng, shape, dtype):
    return tf.cast(rng.uniform(-1.0, 1.0, size=shape), dtype)


def forward_and_gradients(fn, inputs, rng):
    """fn(*inputs) and the gradients of <fn(*inputs), upstream> for every input."""
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        y = fn(*inputs)
    upstream = random(rng, y.shape, y.dtype)
    return [y] + tape.gradient(y, inputs, output_gradients=upstream)


def dense_workloads(fl, rng):
    """Sizes large enough that the GEMM splits rows, columns and reductions across threads."""
    results = {}
    for dtype in (tf.float32, tf.float64, tf.bfloat16):
        for activation in ("relu", "gelu"):
            inputs = [random(rng, (517, 300), dtype), random(rng, (300, 129), dtype),
                      random(rng, (129,), dtype)]
            outs = forward_and_gradients(
                lambda x, k, b, a=activation: fl.ops.fused_dense(x, k, b, activation=a),
                inputs, rng)
            for name, value in zip(("y", "dx", "dkernel", "dbias"), outs):
                results[f"dense/{dtype.name}/{activation}/{name}"] = value
    layer = fl.Dense(65, activation="silu")
    x = random(rng, (4, 130, 96), tf.float32)
    layer.build(x.shape)
    layer.kernel.assign(random(rng, layer.kernel.shape, tf.float32))
    layer.bias.assign(random(rng, layer.bias.shape, tf.float32))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
    grads = tape.gradient(y, [x, layer.kernel, layer.bias])
    for name, value in zip(("y", "dx", "dkernel", "dbias"), [y] + grads):
        results[f"dense_layer/{name}"] = value
    return results


def main(threads, out_path):
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    import fusedlayers as fl

    rng = np.random.default_rng(20261122)
    results = dense_workloads(fl, rng)
    # Bitwise comparison: store the raw bits (bfloat16 has no numpy dtype of its own).
    np.savez(out_path, **{k: np.frombuffer(v.numpy().tobytes(), np.uint8)
                          for k, v in results.items()})


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
