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
        # A batch of a few rows: the one-pass backward, and for bfloat16 the strip forward,
        # split across threads by W's rows and column strips.
        for batch in (1, 3):
            inputs = [random(rng, (batch, 700), dtype), random(rng, (700, 1500), dtype),
                      random(rng, (1500,), dtype)]
            outs = forward_and_gradients(
                lambda x, k, b: fl.ops.fused_dense(x, k, b, activation="relu"), inputs, rng)
            for name, value in zip(("y", "dx", "dkernel", "dbias"), outs):
                results[f"dense/{dtype.name}/batch{batch}/{name}"] = value
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


def conv_workloads(fl, rng):
    """Conv2D and Conv2DTranspose forward and gradients, big enough to split across threads
    (the weight gradients reduce over batch and positions, the part most at risk)."""
    results = {}
    cases = {
        "conv2d": (fl.ops.fused_conv2d, (4, 23, 21, 19), (3, 3, 19, 37),
                   dict(strides=2, padding="same")),
        "conv2d_dilated": (fl.ops.fused_conv2d, (3, 17, 19, 8), (3, 2, 8, 24),
                           dict(dilation_rate=2, padding="valid")),
        "conv2d_transpose": (fl.ops.fused_conv2d_transpose, (4, 11, 9, 40), (4, 4, 21, 40),
                             dict(strides=2, padding="same")),
        "conv2d_transpose_op": (fl.ops.fused_conv2d_transpose, (2, 7, 8, 16), (5, 3, 9, 16),
                                dict(strides=(3, 2), padding="valid", output_padding=(2, 1))),
    }
    for name, (op, x_shape, kernel_shape, attrs) in cases.items():
        filters = kernel_shape[2] if "transpose" in name else kernel_shape[3]
        for dtype in (tf.float32, tf.bfloat16):
            inputs = [random(rng, x_shape, dtype), random(rng, kernel_shape, dtype),
                      random(rng, (filters,), dtype)]
            outs = forward_and_gradients(
                lambda x, k, b, op=op, attrs=attrs: op(x, k, b, activation="elu", **attrs),
                inputs, rng)
            for part, value in zip(("y", "dx", "dkernel", "dbias"), outs):
                results[f"{name}/{dtype.name}/{part}"] = value
    return results


def main(threads, out_path):
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    import fusedlayers as fl

    rng = np.random.default_rng(20261122)
    results = {**dense_workloads(fl, rng), **conv_workloads(fl, rng)}
    # Bitwise comparison: store the raw bits (bfloat16 has no numpy dtype of its own).
    np.savez(out_path, **{k: np.frombuffer(v.numpy().tobytes(), np.uint8)
                          for k, v in results.items()})


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
