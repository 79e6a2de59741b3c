"""Dense: a lazily built tf.Module running y = activation(x @ kernel + bias) as one fused op."""

import keras

from fusedlayers import activations
from fusedlayers.layer import Layer, serialize_or_none
from fusedlayers.ops import fused_dense


class Dense(Layer):
    """Fully connected layer with the constructor of keras.layers.Dense.

    The kernel [K, N] and bias [N] are created on the first call (or `build`), with
    K the input's last dimension; the forward and the backward are each one fused op.
    """

    def __init__(
        self,
        units,
        activation=None,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        dtype=None,
        trainable=True,
        name=None,
    ):
        super().__init__(activity_regularizer=activity_regularizer, dtype=dtype,
                         trainable=trainable, name=name)
        if isinstance(units, bool) or not isinstance(units, int) or units <= 0:
            raise ValueError(f"units must be a positive integer, got {units!r}")
        self.units = units
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)
        self.bias_constraint = keras.constraints.get(bias_constraint)
        self.input_dim = None
        self.kernel = None
        self.bias = None

    def _build(self, input_shape):
        if input_shape.rank is None or input_shape.rank < 1 or input_shape[-1] is None:
            raise ValueError(
                f"{self.name}: the input's last dimension must be known to build, got shape "
                f"{input_shape}"
            )
        self.input_dim = int(input_shape[-1])
        self.kernel = self.add_weight(
            "kernel", [self.input_dim, self.units], self.kernel_initializer,
            self.kernel_regularizer, self.kernel_constraint,
        )
        if self.use_bias:
            self.bias = self.add_weight(
                "bias", [self.units], self.bias_initializer, self.bias_regularizer,
                self.bias_constraint,
            )

    def _call(self, inputs):
        rank = inputs.shape.rank
        last = inputs.shape[-1] if rank else None  # a scalar has none
        if rank is not None and (rank == 0 or last not in (None, self.input_dim)):
            found = "no last dimension" if rank == 0 else f"last dimension {last}"
            raise ValueError(
                f"{self.name}: expected inputs with last dimension {self.input_dim}, got shape "
                f"{inputs.shape} ({found})"
            )
        return fused_dense(
            inputs, self._cast_variable(self.kernel), self._cast_variable(self.bias),
            activation=self.activation,
        )

    def get_config(self):
        ser = keras.initializers.serialize
        return {
            **super().get_config(),
            "units": self.units,
            "activation": activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": ser(self.kernel_initializer),
            "bias_initializer": ser(self.bias_initializer),
            "kernel_regularizer": serialize_or_none(keras.regularizers.serialize,
                                                    self.kernel_regularizer),
            "bias_regularizer": serialize_or_none(keras.regularizers.serialize,
                                                  self.bias_regularizer),
            "kernel_constraint": serialize_or_none(keras.constraints.serialize,
                                                   self.kernel_constraint),
            "bias_constraint": serialize_or_none(keras.constraints.serialize,
                                                 self.bias_constraint),
        }
