"""The seed auto-encoder in the functional ReuseElements style: networks are functions of a list.

Hafner, "Structuring Deep Learning Models": `encoder` and `decoder` take the list of their
layers; an empty list is filled on the first run and reused after, `functools.partial`
binds a network to its own list, and the parent hands each child a sub-list.
"""

import functools
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import fusedlayers as fl  # noqa: E402
from autoencoder_layer_dict import CODE_SIZE, synthetic_images  # noqa: E402


def encoder(image, layers):
    reuse = fl.ReuseElements(layers)
    hidden = reuse(fl.Conv2D(32, 4, 2, activation="elu"))(image)
    hidden = reuse(fl.Conv2D(64, 4, 2, activation="elu"))(hidden)
    hidden = reuse(fl.Conv2D(128, 4, 2, activation="elu"))(hidden)
    hidden = reuse(fl.Flatten())(hidden)
    return reuse(fl.Dense(CODE_SIZE))(hidden)


def decoder(code, layers):
    reuse = fl.ReuseElements(layers)
    hidden = code[:, None, None, :]
    hidden = reuse(fl.Conv2DTranspose(128, 5, 2, activation="elu"))(hidden)
    hidden = reuse(fl.Conv2DTranspose(64, 5, 2, activation="elu"))(hidden)
    return reuse(fl.Conv2DTranspose(1, 4, 2))(hidden)


def auto_encoder(image, layers):
    """The parent: each child gets its own sub-list, so the two never share weights."""
    reuse = fl.ReuseElements(layers)
    my_encoder = functools.partial(encoder, layers=reuse([]))
    my_decoder = functools.partial(decoder, layers=reuse([]))
    recon = my_decoder(my_encoder(image))
    return recon, tf.reduce_mean((recon - image) ** 2)


def main(steps=20, batch=32, seed=0):
    keras.utils.set_random_seed(seed)  # the initial weights
    state = tf.Module()  # holds the list so its variables are tracked (and checkpointable)
    state.layers = []
    optimizer = keras.optimizers.Adam(1e-3)

    # Compile a function that calls the network, not the partial: tf.function refuses a
    # list argument that the function fills.
    @tf.function
    def train_step(images):
        with tf.GradientTape() as tape:
            _, loss = auto_encoder(images, state.layers)
        variables = state.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    losses = []
    for step in range(steps):
        losses.append(float(train_step(synthetic_images(batch, seed=step))))
        if step % 5 == 0 or step == steps - 1:
            print(f"step {step:3d}  loss {losses[-1]:.5f}")
    print(f"encoder {len(state.layers[0])} layers, decoder {len(state.layers[1])} layers, "
          f"{len(state.trainable_variables)} variables")
    return state, losses


if __name__ == "__main__":
    main()
