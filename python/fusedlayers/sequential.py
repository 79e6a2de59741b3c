"""Sequential: layers applied one after another, built lazily, nestable, itself a Layer."""

import tensorflow as tf

from fusedlayers.layer import Layer, deserialize, serialize


class Sequential(Layer):
    """Calls its layers in order. Each builds on its first call, so nothing needs an input shape.

    A Sequential is a Layer: it nests in another, serializes with its children, and its
    `trainable` applies to all of them (before they are built). Inputs reach the first layer
    as given; each layer casts them to its own compute dtype.
    """

    casts_inputs = False

    def __init__(self, layers=None, trainable=True, name=None):
        super().__init__(trainable=trainable, name=name)
        self._layers = []
        for layer in layers or ():
            self.add(layer)

    @property
    def layers(self):
        """The layers, in the order they are applied."""
        return list(self._layers)

    def add(self, layer):
        """Appends `layer` (a fusedlayers Layer); a frozen Sequential freezes it."""
        if not isinstance(layer, Layer):
            raise TypeError(
                f"{self.name}: Sequential holds fusedlayers layers (fl.Dense, fl.Sequential, ...), "
                f"got {type(layer).__name__}"
            )
        if self.built:
            raise ValueError(f"{self.name}: cannot add {layer!r} after the Sequential is built")
        if not self.trainable:
            layer.trainable = False
        self._layers.append(layer)

    @Layer.trainable.setter
    def trainable(self, value):
        Layer.trainable.fset(self, value)
        for layer in getattr(self, "_layers", ()):
            layer.trainable = value

    def _build(self, input_shape):
        """Builds every layer by tracing a call on a symbolic input of `input_shape`."""
        spec = tf.TensorSpec(input_shape, self.compute_dtype)
        tf.function(self._call, autograph=False).get_concrete_function(spec)

    def _call(self, inputs):
        for layer in self._layers:
            inputs = layer(inputs)
        return inputs

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "layers": [serialize(layer) for layer in self._layers],
        }

    def __repr__(self):
        extra = "" if self.trainable else ", trainable=False"
        return f"Sequential({list(self._layers)!r}, name={self.name!r}{extra})"

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        layers = [deserialize(spec) for spec in config.pop("layers", ())]
        return cls(layers, **config)
