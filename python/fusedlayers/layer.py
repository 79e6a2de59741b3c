"""Layer: the tf.Module base of every fused layer (lazy build, dtype policy, losses, config)."""

import keras
import tensorflow as tf


def _dtype_policy(dtype):
    """Maps a layer's dtype argument to (variable dtype, compute dtype, serializable name)."""
    if dtype is None:
        dtype = keras.config.dtype_policy()
    if isinstance(dtype, keras.DTypePolicy):
        policy = dtype
    elif isinstance(dtype, str) and dtype.startswith("mixed_"):
        policy = keras.DTypePolicy(dtype)
    else:
        try:
            dt = tf.as_dtype(dtype)
        except TypeError as e:
            raise TypeError(
                f"dtype must be a float dtype, a keras.DTypePolicy or a policy name such as "
                f"'mixed_bfloat16', got {dtype!r}"
            ) from e
        policy = keras.DTypePolicy(dt.name)
    variable = tf.as_dtype(policy.variable_dtype)
    compute = tf.as_dtype(policy.compute_dtype)
    for dt in (variable, compute):
        if dt not in (tf.float16, tf.bfloat16, tf.float32, tf.float64):
            raise TypeError(
                f"dtype must be floating (float16, bfloat16, float32, float64), got {dt.name}"
            )
    return variable, compute, policy.name


class Layer(tf.Module):
    """A tf.Module that creates its variables on the first call, from the input's shape.

    Subclasses implement `_build(input_shape)` (create variables with `add_weight`),
    `_call(inputs)` (inputs already cast to the compute dtype) and `get_config()`.
    """

    def __init__(self, activity_regularizer=None, dtype=None, trainable=True, name=None):
        super().__init__(name=name)
        self.variable_dtype, self.compute_dtype, self._dtype_name = _dtype_policy(dtype)
        self.trainable = bool(trainable)
        self.activity_regularizer = keras.regularizers.get(activity_regularizer)
        self.built = False
        self._regularized = []  # (regularizer, variable) pairs
        self._activity_losses = []

    @property
    def dtype(self):
        """The variables' dtype (the compute dtype differs under a mixed policy)."""
        return self.variable_dtype

    @property
    def dtype_policy(self):
        return self._dtype_name

    def add_weight(self, name, shape, initializer, regularizer=None, constraint=None):
        """Creates a tf.Variable under this module's name scope (lifted out of any tf.function)."""
        initializer = keras.initializers.get(initializer)
        with tf.init_scope(), self.name_scope:
            value = initializer(shape, dtype=self.variable_dtype)
            variable = tf.Variable(
                value, name=name, trainable=self.trainable, constraint=constraint,
                dtype=self.variable_dtype,
            )
        if regularizer is not None:
            self._regularized.append((regularizer, variable))
        return variable

    def build(self, input_shape):
        """Creates the variables for inputs of `input_shape`; later calls are no-ops."""
        if not self.built:
            self._build(tf.TensorShape(input_shape))
            self.built = True

    def __call__(self, inputs):
        inputs = tf.convert_to_tensor(inputs)
        if not self.built:
            self.build(inputs.shape)
        if inputs.dtype.is_floating and inputs.dtype != self.compute_dtype:
            inputs = tf.cast(inputs, self.compute_dtype)
        with self.name_scope:
            outputs = self._call(inputs)
        if self.activity_regularizer is not None:
            self._activity_losses = [self.activity_regularizer(outputs)]
        return outputs

    def _cast_variable(self, variable):
        """The variable in the compute dtype (a cast only under a mixed policy)."""
        if variable is None or variable.dtype == self.compute_dtype:
            return variable
        return tf.cast(variable, self.compute_dtype)

    @property
    def losses(self):
        """Weight regularization losses, plus the activity loss of the latest call."""
        return [reg(v) for reg, v in self._regularized] + list(self._activity_losses)

    def apply_constraints(self):
        """Projects each constrained variable (call after an optimizer step if needed)."""
        for v in self.variables:
            if getattr(v, "constraint", None) is not None:
                v.assign(v.constraint(v))

    def get_config(self):
        return {
            "name": self.name,
            "dtype": self._dtype_name,
            "trainable": self.trainable,
            "activity_regularizer": keras.regularizers.serialize(self.activity_regularizer),
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        config = self.get_config()
        args = ", ".join(
            f"{k}={v!r}" for k, v in config.items() if v is not None and k != "trainable"
        )
        return f"{type(self).__name__}({args})"


def serialize_or_none(serialize, obj):
    return None if obj is None else serialize(obj)
