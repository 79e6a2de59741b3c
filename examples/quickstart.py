"""Swap a fused Dense into a small regression model and train it for a few steps."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import fusedlayers as fl  # noqa: E402


def main(steps=50):
    tf.random.set_seed(0)
    x = tf.random.normal([256, 32])
    target = tf.reduce_sum(x[:, :4], axis=1, keepdims=True)
    hidden = fl.Dense(64, activation="gelu")
    head = fl.Dense(1)
    optimizer = keras.optimizers.Adam(1e-2)

    @tf.function
    def train_step(x, target):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean((head(hidden(x)) - target) ** 2)
        variables = hidden.trainable_variables + head.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    for step in range(steps):
        loss = train_step(x, target)
        if step % 10 == 0 or step == steps - 1:
            print(f"step {step:3d}  loss {float(loss):.4f}")
    print("build:", fl.build_info())
    return float(loss)


if __name__ == "__main__":
    main()
