"""Conv2D and Conv2DTranspose: the stock Keras layers whose call() is one fused conv + bias + activation op."""

import keras

from fusedlayers._layout import TO_CHANNELS_FIRST, TO_CHANNELS_LAST, transpose
from fusedlayers.keras import _support
from fusedlayers.ops import fused_conv2d, fused_conv2d_transpose


class _FusedConvMixin(_support.FusedLayerMixin):
    """The call() both conv layers share: NHWC around the op, activations it cannot run after it."""

    def _fused_nhwc(self, x, kernel, bias, activation):
        raise NotImplementedError

    def call(self, inputs):
        if _support.use_stock_path(inputs):
            return super().call(inputs)
        fused_activation, post_activation = _support.split_activation(self.activation)
        x = self.compute_cast(inputs)
        channels_first = self.data_format == "channels_first"
        if channels_first:
            x = transpose(x, TO_CHANNELS_LAST, f"{self.name}: inputs")
        outputs = self._fused_nhwc(
            x, self.compute_cast(self.kernel), self.compute_cast(self.bias), fused_activation)
        if channels_first:
            outputs = transpose(outputs, TO_CHANNELS_FIRST, f"{self.name}: outputs")
        return outputs if post_activation is None else post_activation(outputs)


@keras.saving.register_keras_serializable(package="fusedlayers")
class Conv2D(_FusedConvMixin, keras.layers.Conv2D):
    """keras.layers.Conv2D with the same constructor, weights and config, running fl.ops.fused_conv2d.

    `groups` other than 1 and LoRA (`lora_rank`, `lora_alpha` in kwargs) raise ValueError:
    the fused op has no such path (fuse() leaves such layers stock).
    """

    NEUTRAL_ARGUMENTS = {"groups": 1, "lora_rank": None, "lora_alpha": None}

    def __init__(
        self,
        filters,
        kernel_size,
        strides=(1, 1),
        padding="valid",
        data_format=None,
        dilation_rate=(1, 1),
        groups=1,
        activation=None,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        **kwargs,
    ):
        self._check_arguments(dict(groups=groups, lora_rank=kwargs.get("lora_rank"),
                                   lora_alpha=kwargs.get("lora_alpha")))
        super().__init__(
            filters,
            kernel_size,
            strides=strides,
            padding=padding,
            data_format=data_format,
            dilation_rate=dilation_rate,
            groups=groups,
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

    def _fused_nhwc(self, x, kernel, bias, activation):
        return fused_conv2d(x, kernel, bias, strides=self.strides, padding=self.padding,
                            dilation_rate=self.dilation_rate, activation=activation)


@keras.saving.register_keras_serializable(package="fusedlayers")
class Conv2DTranspose(_FusedConvMixin, keras.layers.Conv2DTranspose):
    """keras.layers.Conv2DTranspose with the same constructor, weights and config, running
    fl.ops.fused_conv2d_transpose (Keras's output-size rule, output_padding included)."""

    def __init__(
        self,
        filters,
        kernel_size,
        strides=(1, 1),
        padding="valid",
        output_padding=None,
        data_format=None,
        dilation_rate=(1, 1),
        activation=None,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        **kwargs,
    ):
        self._check_arguments({})
        super().__init__(
            filters,
            kernel_size,
            strides=strides,
            padding=padding,
            output_padding=output_padding,
            data_format=data_format,
            dilation_rate=dilation_rate,
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

    def _fused_nhwc(self, x, kernel, bias, activation):
        return fused_conv2d_transpose(
            x, kernel, bias, strides=self.strides, padding=self.padding,
            output_padding=self.output_padding, dilation_rate=self.dilation_rate,
            activation=activation)
