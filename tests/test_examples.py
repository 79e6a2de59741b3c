"""The examples run as shipped: the seed auto-encoder in both reuse styles, and the quickstart."""

import importlib
import pathlib
import sys

import numpy as np
import pytest
import tensorflow as tf

import fusedlayers as fl
from conftest import assert_close

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(scope="module")
def examples():
    sys.path.insert(0, str(EXAMPLES))
    try:
        yield lambda name: importlib.import_module(name)
    finally:
        sys.path.remove(str(EXAMPLES))


def test_layer_dictionary_autoencoder_trains(examples):
    example = examples("autoencoder_layer_dict")
    model, losses = example.main(steps=12, batch=16)
    assert list(model.layers) == ["enc1", "enc2", "enc3", "flatten", "code", "dec1", "dec2",
                                  "dec3"]
    assert all(isinstance(model.layers[n], fl.Conv2D) for n in ("enc1", "enc2", "enc3"))
    assert all(isinstance(model.layers[n], fl.Conv2DTranspose) for n in ("dec1", "dec2", "dec3"))
    assert len(model.trainable_variables) == 14
    assert losses[-1] < 0.5 * losses[0]
    images = example.synthetic_images(3)
    recon = model(images)
    assert recon.shape == images.shape == (3, 28, 28, 1)
    assert len(model.trainable_variables) == 14  # a later call makes nothing new
    code = model.encode(images)
    assert code.shape == (3, example.CODE_SIZE)
    assert_close(model.decode(code), recon)


def test_reuse_elements_autoencoder_trains(examples):
    example = examples("autoencoder_reuse")
    state, losses = example.main(steps=12, batch=16)
    encoder_layers, decoder_layers = state.layers
    assert [type(layer) for layer in encoder_layers] == [fl.Conv2D] * 3 + [fl.Flatten, fl.Dense]
    assert [type(layer) for layer in decoder_layers] == [fl.Conv2DTranspose] * 3
    assert len(state.trainable_variables) == 14
    assert losses[-1] < 0.5 * losses[0]
    images = example.synthetic_images(3)
    recon, loss = example.auto_encoder(images, state.layers)
    assert recon.shape == (3, 28, 28, 1) and len(state.trainable_variables) == 14
    assert_close(loss, tf.reduce_mean((recon - images) ** 2))
    # The same list shares the weights: the encoder alone gives the code the parent used.
    code = example.encoder(images, encoder_layers)
    assert_close(example.decoder(code, decoder_layers), recon)
    with pytest.raises(TypeError, match="ReuseElements: element 0 .*Conv2D.*Conv2DTranspose"):
        example.decoder(code, encoder_layers)  # an encoder's list is not a decoder's


def test_quickstart_trains(examples):
    loss = examples("quickstart").main(steps=30)
    assert np.isfinite(loss) and loss < 1.0
