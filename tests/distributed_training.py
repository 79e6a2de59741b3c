"""A few SGD steps of a fused model under a tf.distribute strategy, for tests/test_distribute.py.

Run as a script, in a fresh process: logical devices and TF_CONFIG only take effect before
TensorFlow initializes, which the pytest process has long done.

    python distributed_training.py mirrored OUT.npz      # MirroredStrategy, 2 logical CPUs
    python distributed_training.py worker OUT.npz        # one MultiWorkerMirroredStrategy
                                                         # worker (TF_CONFIG set by the test)
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

GLOBAL_BATCH = 16
STEPS = 3
LEARNING_RATE = 0.1


def make_model():
    import keras

    import fusedlayers as fl

    return fl.Sequential([
        fl.Reshape((2, 2, 1)),
        fl.Conv2DTranspose(3, 2, strides=2, activation="elu",
                           kernel_initializer=keras.initializers.GlorotUniform(3)),
        fl.Conv2D(2, 3, activation="tanh", kernel_initializer=keras.initializers.GlorotUniform(4)),
        fl.Flatten(),
        fl.Dense(8, activation="gelu", kernel_initializer=keras.initializers.GlorotUniform(1)),
        fl.Dense(1, kernel_initializer=keras.initializers.GlorotUniform(2)),
    ])


def data():
    x = tf.random.stateless_normal([GLOBAL_BATCH, 4], seed=[1, 2])
    return x, tf.reduce_sum(tf.sin(x), axis=1, keepdims=True)


def train(strategy):
    """Trains a fresh model with `strategy`, each replica on its slice of the global batch;
    its first call (which builds it) happens inside strategy.run. Returns the model."""
    import keras

    with strategy.scope():
        model = make_model()
        optimizer = keras.optimizers.SGD(LEARNING_RATE)
    x, y = data()

    def replica_slice(ctx):
        size = GLOBAL_BATCH // ctx.num_replicas_in_sync
        start = ctx.replica_id_in_sync_group * size
        return x[start:start + size], y[start:start + size]

    def replica_step(batch):
        inputs, targets = batch
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum((model(inputs) - targets) ** 2) / GLOBAL_BATCH
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))

    @tf.function
    def step():
        batch = strategy.experimental_distribute_values_from_function(replica_slice)
        strategy.run(replica_step, args=(batch,))

    for _ in range(STEPS):
        step()
    return model


def main(mode, out_path):
    if mode == "mirrored":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    elif mode == "worker":
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    else:
        raise ValueError(f"mode must be 'mirrored' or 'worker', got {mode!r}")
    model = train(strategy)
    np.savez(
        out_path,
        replicas=strategy.num_replicas_in_sync,
        variable_types=[type(v).__name__ for v in model.variables],
        **{f"w{i}": v.numpy() for i, v in enumerate(model.variables)},
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
