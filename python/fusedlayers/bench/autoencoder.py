"""The seed auto-encoder (Hafner, "Structuring Deep Learning Models", TF2), built fused and stock.

Encoder: Conv2D(32, 4, 2), Conv2D(64, 4, 2), Conv2D(128, 4, 2) with elu, flatten, Dense(64).
Decoder from the 1×1 code: Conv2DTranspose(128, 5, 2), (64, 5, 2) with elu, (1, 4, 2).
All 'valid' as in the post, so a 28×28×1 image comes back as 28×28×1.
"""

import dataclasses

import keras
import tensorflow as tf

from fusedlayers.bench.workloads import Contest, LayerSpec, as_float32, random_tensor, require

IMAGE_SHAPE = (28, 28, 1)
CODE_SIZE = 64


def _conv(kind, input_shape, filters, kernel_size):
    return LayerSpec.make(kind, input_shape, filters=filters, kernel_size=kernel_size, strides=2,
                          padding="valid")


# (name, layer, activation), in the order the model applies them.
ENCODER = (
    ("enc1", _conv("Conv2D", IMAGE_SHAPE, 32, 4), "elu"),
    ("enc2", _conv("Conv2D", (13, 13, 32), 64, 4), "elu"),
    ("enc3", _conv("Conv2D", (5, 5, 64), 128, 4), "elu"),
    ("enc4", LayerSpec.make("Dense", (128,), units=CODE_SIZE), "linear"),
)
DECODER = (
    ("dec1", _conv("Conv2DTranspose", (1, 1, CODE_SIZE), 128, 5), "elu"),
    ("dec2", _conv("Conv2DTranspose", (5, 5, 128), 64, 5), "elu"),
    ("dec3", _conv("Conv2DTranspose", (13, 13, 64), 1, 4), "linear"),
)
LAYERS = ENCODER + DECODER


class AutoEncoder:
    """The model over a `{name: layer}` dict: either fl.* layers or keras.layers.* ones."""

    def __init__(self, layers):
        self.layers = layers

    def __call__(self, image):
        hidden = image
        for name, _, _ in ENCODER[:-1]:
            hidden = self.layers[name](hidden)
        hidden = tf.reshape(hidden, [-1, hidden.shape[1] * hidden.shape[2] * hidden.shape[3]])
        hidden = self.layers["enc4"](hidden)[:, None, None, :]
        for name, _, _ in DECODER:
            hidden = self.layers[name](hidden)
        return hidden

    @property
    def variables(self):
        return [v for name, _, _ in LAYERS for v in (self.layers[name].kernel,
                                                      self.layers[name].bias)]


def train_step(model, optimizer):
    """image -> (loss, grads): one Adam step on the reconstruction loss (grads returned to compare)."""
    variables = model.variables

    def step(image):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(tf.cast(model(image) - image, tf.float32)))
        grads = tape.gradient(loss, variables)
        optimizer.apply(grads, variables)
        return [loss, *grads]

    return step


@dataclasses.dataclass(frozen=True)
class AutoEncoderSpec:
    """A full training step (forward, backward, Adam update) of the seed auto-encoder."""

    kind = "AutoEncoder"
    layer = "autoencoder"

    def label(self):
        return "28×28×1 train step"

    def flops_forward(self, batch):
        return sum(spec.flops_forward(batch) for _, spec, _ in LAYERS)

    def contest(self, pass_, batch, dtype, activation, rng):
        if pass_ != "train":
            raise ValueError("the auto-encoder workload is a training step only")
        for kind in ("Dense", "Conv2D", "Conv2DTranspose"):
            require(kind)
        fused_layers, stock_layers = {}, {}
        for name, spec, act in LAYERS:
            fused_layers[name], stock_layers[name], _ = spec.build_layers(batch, dtype, act, rng)
        image = tf.sigmoid(random_tensor(rng, (batch, *IMAGE_SHAPE), dtype))
        contest = Contest(_adam_step(AutoEncoder(fused_layers)),
                          _adam_step(AutoEncoder(stock_layers)), (image,))
        if dtype != "float32":
            reference_layers = {
                name: spec.float32_twin(stock_layers[name], act, (batch, *spec.input_shape))
                for name, spec, act in LAYERS}
            contest.reference = _adam_step(AutoEncoder(reference_layers))
            contest.reference_args = as_float32((image,))
        return contest


def _adam_step(model):
    # Adam's slots are built here, outside any tf.function or XLA cluster.
    optimizer = keras.optimizers.Adam(1e-3)
    optimizer.build(model.variables)
    return train_step(model, optimizer)
