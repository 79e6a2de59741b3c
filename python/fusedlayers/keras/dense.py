"""Dense: keras.layers.Dense whose call() is one fused matmul + bias + activation op."""

import keras

from fusedlayers.keras import _support
from fusedlayers.ops import fused_dense


@keras.saving.register_keras_serializable(package="fusedlayers")
class Dense(_support.FusedLayerMixin, keras.layers.Dense):
    """keras.layers.Dense with the same constructor, weights and config, running fl.ops.fused_dense.

    LoRA (`lora_rank`, `lora_alpha`) and quantization (`quantization_config`, a
    quantized dtype policy) raise ValueError: the fused op has no such path.
    """

    NEUTRAL_ARGUMENTS = {"lora_rank": None, "lora_alpha": None, "quantization_config": None}

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
        lora_rank=None,
        lora_alpha=None,
        quantization_config=None,
        **kwargs,
    ):
        self._check_arguments(dict(
            lora_rank=lora_rank, lora_alpha=lora_alpha, quantization_config=quantization_config))
        super().__init__(
            units,
            activation=activation,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            bias_initializer=bias_initializer,
            kernel_regularizer=kernel_regularizer,
            bias_regularizer=bias_regularizer,
            activity_regularizer=activity_regularizer,
            kernel_constraint=kernel_constraint,
            bias_constraint=bias_constraint,
            **kwargs,
        )
        self._finish_init()

    def call(self, inputs, training=None):
        if _support.use_stock_path(inputs):
            return super().call(inputs, training=training)
        fused_activation, post_activation = _support.split_activation(self.activation)
        outputs = fused_dense(
            self.compute_cast(inputs),
            self.compute_cast(self.kernel),
            self.compute_cast(self.bias),
            activation=fused_activation,
        )
        return outputs if post_activation is None else post_activation(outputs)
