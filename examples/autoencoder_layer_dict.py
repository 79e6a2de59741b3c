"""The seed auto-encoder in the layer-dictionary style: each layer mentioned once, where it is used.

Hafner, "Structuring Deep Learning Models": a Conv2D encoder to a 64-d code, a
Conv2DTranspose decoder back to 28x28x1, trained for a few steps on synthetic images.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import fusedlayers as fl  # noqa: E402

CODE_SIZE = 64


class AutoEncoder(fl.Module):
    """Layers are made by self.get on the first call; later calls (and traces) reuse them."""

    def encode(self, image):
        hidden = self.get("enc1", fl.Conv2D, 32, 4, 2, activation="elu")(image)
        hidden = self.get("enc2", fl.Conv2D, 64, 4, 2, activation="elu")(hidden)
        hidden = self.get("enc3", fl.Conv2D, 128, 4, 2, activation="elu")(hidden)
        hidden = self.get("flatten", fl.Flatten)(hidden)
        return self.get("code", fl.Dense, CODE_SIZE)(hidden)

    def decode(self, code):
        hidden = code[:, None, None, :]  # a 1x1 image with CODE_SIZE channels
        hidden = self.get("dec1", fl.Conv2DTranspose, 128, 5, 2, activation="elu")(hidden)
        hidden = self.get("dec2", fl.Conv2DTranspose, 64, 5, 2, activation="elu")(hidden)
        return self.get("dec3", fl.Conv2DTranspose, 1, 4, 2)(hidden)

    def __call__(self, image):
        return self.decode(self.encode(image))


def synthetic_images(batch, seed=0):
    """Smooth random blobs in [0, 1], 28x28x1: something an auto-encoder can learn quickly."""
    noise = tf.random.stateless_uniform([batch, 7, 7, 1], seed=[seed, 1])
    return tf.image.resize(noise, [28, 28], method="bilinear")


def main(steps=20, batch=32, seed=0):
    keras.utils.set_random_seed(seed)  # the initial weights
    model = AutoEncoder(name="autoencoder")
    optimizer = keras.optimizers.Adam(1e-3)

    @tf.function
    def train_step(images):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean((model(images) - images) ** 2)
        variables = model.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    losses = []
    for step in range(steps):
        losses.append(float(train_step(synthetic_images(batch, seed=step))))
        if step % 5 == 0 or step == steps - 1:
            print(f"step {step:3d}  loss {losses[-1]:.5f}")
    print(f"{len(model.layers)} layers, {len(model.trainable_variables)} variables:",
          ", ".join(model.layers))
    return model, losses


if __name__ == "__main__":
    main()
