"""8 Python threads calling the same layers and ops at once get the results of serial calls."""

import threading

import numpy as np
import tensorflow as tf

import fusedlayers as fl
from conftest import assert_close

THREADS = 8
ROUNDS = 6


def random(rng, shape):
    return tf.constant(rng.uniform(-1.0, 1.0, size=shape), tf.float32)


def run_in_threads(work, num_threads):
    """Runs work(i) for i < num_threads, all released at once; re-raises the first error."""
    barrier = threading.Barrier(num_threads)
    results, errors = [None] * num_threads, []

    def body(i):
        try:
            barrier.wait()
            results[i] = work(i)
        except Exception as e:  # noqa: BLE001  (reported in the main thread)
            errors.append(e)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(num_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


class Workload:
    """Per-thread inputs run through one shared fl.Dense, the op with its gradient, and a
    shared tf.function; every call's results are returned for comparison."""

    def __init__(self, rng):
        self.layer = fl.Dense(33, activation="gelu")
        self.layer.build([None, 70])
        self.kernel, self.bias = random(rng, (70, 40)), random(rng, (40,))
        self.inputs = [random(rng, (37 + 5 * i, 70)) for i in range(THREADS)]
        self.traced = tf.function(lambda x: fl.ops.fused_dense(x, self.kernel, None, "tanh"))
        self.conv = fl.Conv2D(6, 3, strides=2, padding="same", activation="elu")
        self.conv.build([None, None, None, 3])
        self.up = fl.Conv2DTranspose(4, 3, strides=2, activation="sigmoid")
        self.up.build([None, None, None, 6])
        self.images = [random(rng, (1 + i % 3, 9 + i, 8, 3)) for i in range(THREADS)]

    def conv_calls(self, i):
        image = self.images[i]
        with tf.GradientTape() as tape:
            tape.watch(image)
            y = self.up(self.conv(image))
        return [y] + tape.gradient(y, [image] + list(self.conv.trainable_variables)
                                   + list(self.up.trainable_variables))

    def call(self, i):
        x = self.inputs[i]
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = fl.ops.fused_dense(x, self.kernel, self.bias, activation="relu")
        return [self.layer(x), y, tape.gradient(y, x), self.traced(x)] + self.conv_calls(i)

    def stock_conv_calls(self, i):
        image = self.images[i]
        variables = [self.conv.bias, self.conv.kernel, self.up.bias, self.up.kernel]
        with tf.GradientTape() as tape:
            tape.watch(image)
            h = tf.nn.elu(tf.nn.conv2d(image, self.conv.kernel, 2, "SAME") + self.conv.bias)
            size = tf.shape(h)[1:3] * 2 + 1  # valid, kernel 3, stride 2
            y = tf.sigmoid(tf.nn.conv2d_transpose(
                h, self.up.kernel, [h.shape[0], size[0], size[1], 4], 2, "VALID") + self.up.bias)
        return [y] + tape.gradient(y, [image] + variables)

    def reference(self, i):
        """The same computations with stock TensorFlow ops."""
        x = self.inputs[i]
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.nn.relu(x @ self.kernel + self.bias)
        return [tf.nn.gelu(x @ self.layer.kernel + self.layer.bias, approximate=False), y,
                tape.gradient(y, x), tf.tanh(x @ self.kernel)] + self.stock_conv_calls(i)


def test_threads_calling_shared_layers_and_ops_match_serial_results():
    work = Workload(np.random.default_rng(5))
    serial = [work.call(i) for i in range(THREADS)]
    for i in range(THREADS):
        for actual, expected in zip(serial[i], work.reference(i)):
            assert_close(actual, expected)
    for _ in range(ROUNDS):
        concurrent = run_in_threads(lambda i: [work.call(i) for _ in range(3)], THREADS)
        for i, calls in enumerate(concurrent):
            for results in calls:
                for actual, expected in zip(results, serial[i]):
                    np.testing.assert_array_equal(actual, expected)
