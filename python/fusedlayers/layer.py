"""Layer: the tf.Module base of every fused layer (lazy build, dtype policy, losses, config)."""

import inspect

import keras
import tensorflow as tf

# Layer classes by the name their configs are serialized under (see `serialize`).
_REGISTRY = {}


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


def registered_name(cls):
    """The class name a config is serialized under: bare for ours, qualified for users'."""
    if cls.__module__.split(".")[0] == "fusedlayers":
        return cls.__name__
    return f"{cls.__module__}.{cls.__qualname__}"


def serialize(layer):
    """{'class_name', 'config'} for a Layer, the inverse of `deserialize`."""
    if not isinstance(layer, Layer):
        raise TypeError(f"only fusedlayers.Layer instances serialize, got {type(layer).__name__}")
    return {"class_name": registered_name(type(layer)), "config": layer.get_config()}


def deserialize(spec):
    """The Layer a `serialize` result describes (its class must have been imported)."""
    cls = _REGISTRY.get(spec.get("class_name")) if isinstance(spec, dict) else None
    if cls is None:
        raise ValueError(
            f"cannot deserialize {spec!r}: expected {{'class_name': <a fusedlayers.Layer "
            f"subclass that has been imported>, 'config': {{...}}}}; known: {sorted(_REGISTRY)}"
        )
    return cls.from_config(spec["config"])


def same_configuration(a, b):
    """Whether two layers are of one class and configuration (names aside: they differ freely)."""
    def comparable(layer):
        return {k: v for k, v in layer.get_config().items() if k != "name"}

    return type(a) is type(b) and comparable(a) == comparable(b)


def collect_losses(module):
    """The losses of every Layer in `module`'s tree (itself included), each layer once even
    when several containers hold it."""
    layers = {id(m): m for m in (module, *module.submodules) if isinstance(m, Layer)}
    return [loss for layer in layers.values() for loss in layer._own_losses()]


class Layer(tf.Module):
    """A tf.Module that creates its variables on the first call, from the input's shape.

    Subclasses implement `_build(input_shape)` (create variables with `add_weight`),
    `_call(inputs)` (inputs already cast to the compute dtype) and `get_config()`.
    """

    # Whether floating inputs are cast to the compute dtype before `_call` (layers that only
    # move data around, and containers whose children cast for themselves, say False).
    casts_inputs = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _REGISTRY[registered_name(cls)] = cls

    def __init__(self, activity_regularizer=None, dtype=None, trainable=True, name=None):
        super().__init__(name=name)
        self.variable_dtype, self.compute_dtype, self._dtype_name = _dtype_policy(dtype)
        self.built = False
        self._trainable = bool(trainable)
        self.activity_regularizer = keras.regularizers.get(activity_regularizer)
        self._regularized = []  # (regularizer, variable) pairs
        self._activity_losses = []

    @property
    def trainable(self):
        """Whether the variables are trainable; tf.Variable fixes this at creation, so it can
        only change before the layer is built."""
        return self._trainable

    @trainable.setter
    def trainable(self, value):
        value = bool(value)
        if self.built and value != self._trainable:
            raise ValueError(
                f"{self.name}: trainable cannot change after the layer is built (its tf.Variables "
                f"were created with trainable={self._trainable}); pass trainable={value} to the "
                f"constructor, or set it before the first call or build()"
            )
        self._trainable = value

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

    # Not converted by AutoGraph: it runs eagerly anyway, and AutoGraph fails (with a
    # warning) on the empty _build of layers without variables.
    @tf.autograph.experimental.do_not_convert
    def build(self, input_shape):
        """Creates the variables for inputs of `input_shape`; later calls are no-ops.

        Runs eagerly even when first called inside a tf.function (init_scope), so the
        variables exist once, are never re-created on a retrace, and a checkpoint restore
        pending for them (restore-on-create) is applied as they are attached.
        """
        if not self.built:
            with tf.init_scope():
                self._build(tf.TensorShape(input_shape))
            self.built = True

    def _build(self, input_shape):
        """Creates the variables (override; layers without variables need not)."""

    def __call__(self, inputs):
        # A tensor goes through as it is (what tf.convert_to_tensor would return): in eager
        # mode the conversion call cost a 16-wide Dense ~9 us of its ~50 us a call.
        if not isinstance(inputs, tf.Tensor):
            inputs = tf.convert_to_tensor(inputs)
        if not self.built:
            self.build(inputs.shape)
        if self.casts_inputs and inputs.dtype.is_floating and inputs.dtype != self.compute_dtype:
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
        """Weight regularization losses, plus the activity losses of the latest call, of this
        layer and of the layers it holds."""
        return collect_losses(self)

    def _own_losses(self):
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
        """The constructor call that rebuilds this layer: its configuration, defaults left out."""
        config = self.get_config()
        defaults = _optional_defaults(type(self), config)
        args = ", ".join(
            f"{k}={v!r}" for k, v in config.items() if k not in defaults or defaults[k] != v
        )
        return f"{type(self).__name__}({args})"


def _optional_defaults(cls, config):
    """The config entries of `cls` that its optional arguments give when left out."""
    params = inspect.signature(cls.__init__).parameters.values()
    required = {p.name: config[p.name] for p in params
                if p.default is inspect.Parameter.empty and p.name in config}
    try:
        defaults = cls.from_config(required).get_config()
    except (TypeError, ValueError):
        return {}
    return {k: v for k, v in defaults.items() if k not in required}


def serialize_or_none(serialize, obj):
    return None if obj is None else serialize(obj)
