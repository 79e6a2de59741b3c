"""Conv2D and Conv2DTranspose: lazily built tf.Modules running conv + bias + activation as one fused op."""

import keras
import tensorflow as tf

from fusedlayers import activations
from fusedlayers._layout import TO_CHANNELS_FIRST, TO_CHANNELS_LAST, transpose
from fusedlayers.layer import Layer, serialize_or_none
from fusedlayers.ops import fused_conv2d, fused_conv2d_transpose
from fusedlayers.ops._conv import normalize_padding, normalize_pair


def _pair_at_least(value, arg_name, minimum=1):
    pair = normalize_pair(value, arg_name)
    if any(v < minimum for v in pair):
        raise ValueError(f"{arg_name} must be >= {minimum} in every dimension, got {value!r}")
    return tuple(pair)


class _Conv2DBase(Layer):
    """What Conv2D and Conv2DTranspose share: arguments, weights, data formats, config."""

    _default_name = None  # Keras's default layer name (tf.Module would say "conv2_d")

    def __init__(self, filters, kernel_size, strides, padding, data_format, dilation_rate,
                 activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
                 bias_regularizer, activity_regularizer, kernel_constraint, bias_constraint,
                 dtype, trainable, name):
        super().__init__(activity_regularizer=activity_regularizer, dtype=dtype,
                         trainable=trainable, name=name or self._default_name)
        if isinstance(filters, bool) or not isinstance(filters, int) or filters <= 0:
            raise ValueError(f"filters must be a positive integer, got {filters!r}")
        self.filters = filters
        self.kernel_size = _pair_at_least(kernel_size, "kernel_size")
        self.strides = _pair_at_least(strides, "strides")
        self.dilation_rate = _pair_at_least(dilation_rate, "dilation_rate")
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError(
                f"strides > 1 is not supported together with dilation_rate > 1 (as in Keras), "
                f"got strides={self.strides} and dilation_rate={self.dilation_rate}"
            )
        self.padding = normalize_padding(padding)
        data_format = data_format or keras.config.image_data_format()
        if data_format not in ("channels_last", "channels_first"):
            raise ValueError(
                f"data_format must be 'channels_last' or 'channels_first', got {data_format!r}"
            )
        self.data_format = data_format
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)
        self.bias_constraint = keras.constraints.get(bias_constraint)
        self.input_channels = None
        self.kernel = None
        self.bias = None

    @property
    def _channel_axis(self):
        return -1 if self.data_format == "channels_last" else 1

    def _kernel_shape(self, input_channels):
        raise NotImplementedError

    def _build(self, input_shape):
        if input_shape.rank != 4 or input_shape[self._channel_axis] is None:
            raise ValueError(
                f"{self.name}: expected a rank-4 input ({self.data_format}) with a known channel "
                f"dimension to build, got shape {input_shape}"
            )
        self.input_channels = int(input_shape[self._channel_axis])
        self.kernel = self.add_weight(
            "kernel", self._kernel_shape(self.input_channels), self.kernel_initializer,
            self.kernel_regularizer, self.kernel_constraint,
        )
        if self.use_bias:
            self.bias = self.add_weight(
                "bias", [self.filters], self.bias_initializer, self.bias_regularizer,
                self.bias_constraint,
            )

    def _fused_nhwc(self, x, kernel, bias):
        raise NotImplementedError

    def _call(self, inputs):
        if inputs.shape.rank != 4:
            raise ValueError(
                f"{self.name}: expected a rank-4 input ({self.data_format}), got shape "
                f"{inputs.shape}"
            )
        channels = inputs.shape[self._channel_axis]
        if channels is not None and channels != self.input_channels:
            raise ValueError(
                f"{self.name}: expected inputs with {self.input_channels} channels "
                f"({self.data_format}), got shape {inputs.shape} ({channels} channels)"
            )
        if self.data_format == "channels_last":
            return self._fused_nhwc(inputs, self._cast_variable(self.kernel),
                                    self._cast_variable(self.bias))
        x = transpose(inputs, TO_CHANNELS_LAST, f"{self.name}: inputs")
        y = self._fused_nhwc(x, self._cast_variable(self.kernel), self._cast_variable(self.bias))
        return transpose(y, TO_CHANNELS_FIRST, f"{self.name}: outputs")

    def get_config(self):
        ser = keras.initializers.serialize
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            "data_format": self.data_format,
            "dilation_rate": self.dilation_rate,
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


class Conv2D(_Conv2DBase):
    """2D convolution with the constructor of keras.layers.Conv2D (no LoRA).

    The kernel [kh, kw, in_channels // groups, filters] and bias [filters] are created
    on the first call; forward and backward are each one fused op per group.
    """

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
        dtype=None,
        trainable=True,
        name=None,
    ):
        super().__init__(filters, kernel_size, strides, padding, data_format, dilation_rate,
                         activation, use_bias, kernel_initializer, bias_initializer,
                         kernel_regularizer, bias_regularizer, activity_regularizer,
                         kernel_constraint, bias_constraint, dtype, trainable, name)
        if isinstance(groups, bool) or not isinstance(groups, int) or groups <= 0:
            raise ValueError(f"groups must be a positive integer, got {groups!r}")
        if filters % groups:
            raise ValueError(
                f"filters must be divisible by groups, got filters={filters}, groups={groups}"
            )
        self.groups = groups

    _default_name = "conv2d"

    def _kernel_shape(self, input_channels):
        if input_channels % self.groups:
            raise ValueError(
                f"{self.name}: the input's channels ({input_channels}) must be divisible by "
                f"groups={self.groups}"
            )
        return [*self.kernel_size, input_channels // self.groups, self.filters]

    def _fused_nhwc(self, x, kernel, bias):
        def conv(x, kernel, bias):
            return fused_conv2d(x, kernel, bias, strides=self.strides, padding=self.padding,
                                dilation_rate=self.dilation_rate, activation=self.activation)

        if self.groups == 1:
            return conv(x, kernel, bias)
        # Each group is an independent convolution over its slice of the channels.
        xs = tf.split(x, self.groups, axis=-1)
        kernels = tf.split(kernel, self.groups, axis=-1)
        biases = tf.split(bias, self.groups) if bias is not None else [None] * self.groups
        return tf.concat([conv(*args) for args in zip(xs, kernels, biases)], axis=-1)

    def get_config(self):
        return {**super().get_config(), "groups": self.groups}


class Conv2DTranspose(_Conv2DBase):
    """Transposed 2D convolution with the constructor of keras.layers.Conv2DTranspose.

    The kernel [kh, kw, filters, in_channels] and bias [filters] are created on the
    first call; the output size follows Keras's rule, output_padding included.
    """

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
        dtype=None,
        trainable=True,
        name=None,
    ):
        super().__init__(filters, kernel_size, strides, padding, data_format, dilation_rate,
                         activation, use_bias, kernel_initializer, bias_initializer,
                         kernel_regularizer, bias_regularizer, activity_regularizer,
                         kernel_constraint, bias_constraint, dtype, trainable, name)
        if output_padding is None:
            self.output_padding = None
        else:
            self.output_padding = _pair_at_least(output_padding, "output_padding", minimum=0)
            if any(p >= s for p, s in zip(self.output_padding, self.strides)):
                raise ValueError(
                    f"output_padding must be strictly less than strides in every dimension, got "
                    f"output_padding={self.output_padding} and strides={self.strides}"
                )

    _default_name = "conv2d_transpose"

    def _kernel_shape(self, input_channels):
        return [*self.kernel_size, self.filters, input_channels]

    def _fused_nhwc(self, x, kernel, bias):
        return fused_conv2d_transpose(
            x, kernel, bias, strides=self.strides, padding=self.padding,
            output_padding=self.output_padding, dilation_rate=self.dilation_rate,
            activation=self.activation,
        )

    def get_config(self):
        return {**super().get_config(), "output_padding": self.output_padding}
