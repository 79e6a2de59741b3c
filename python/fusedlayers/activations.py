"""The activation names the fused ops accept, and the mapping of Keras/TF callables onto them."""

import functools
from typing import NamedTuple

import keras
import tensorflow as tf

# Same order and names as csrc/kernels/activation.h's table.
NAMES = (
    "linear", "relu", "relu6", "leaky_relu", "elu", "selu",
    "gelu", "gelu_tanh", "sigmoid", "tanh", "silu", "softplus",
)
# The gradient of these reads the pre-activation (the forward op then saves it).
NEEDS_PREACTIVATION = frozenset({"gelu", "gelu_tanh", "silu", "softplus"})
DEFAULT_LEAKY_SLOPE = 0.2  # keras.activations.leaky_relu's default
_ALIASES = {"swish": "silu", None: "linear"}


class Activation(NamedTuple):
    """An activation as the ops take it: a name from NAMES and leaky_relu's slope."""

    name: str
    slope: float = DEFAULT_LEAKY_SLOPE

    def needs_preactivation(self):
        return self.name in NEEDS_PREACTIVATION or (self.name == "leaky_relu" and self.slope < 0)


def _callable_table():
    ka = keras.activations
    table = {
        ka.linear: "linear", ka.relu: "relu", ka.relu6: "relu6", ka.leaky_relu: "leaky_relu",
        ka.elu: "elu", ka.selu: "selu", ka.gelu: "gelu", ka.sigmoid: "sigmoid", ka.tanh: "tanh",
        ka.silu: "silu", ka.softplus: "softplus",
        tf.nn.relu: "relu", tf.nn.relu6: "relu6", tf.nn.leaky_relu: "leaky_relu", tf.nn.elu: "elu",
        tf.nn.selu: "selu", tf.nn.gelu: "gelu", tf.nn.sigmoid: "sigmoid", tf.nn.tanh: "tanh",
        tf.nn.silu: "silu", tf.nn.softplus: "softplus", tf.math.sigmoid: "sigmoid",
        tf.math.tanh: "tanh",
    }
    if hasattr(ka, "swish"):
        table[ka.swish] = "silu"
    return table


_CALLABLES = _callable_table()


def _from_partial(fn):
    """functools.partial(keras.activations.leaky_relu, negative_slope=s) and gelu(approximate=)."""
    base = _CALLABLES.get(fn.func)
    if base is None or fn.args:
        return None
    kwargs = dict(fn.keywords)
    if base == "leaky_relu":
        slope = kwargs.pop("negative_slope", kwargs.pop("alpha", DEFAULT_LEAKY_SLOPE))
        return Activation("leaky_relu", float(slope)) if not kwargs else None
    if base == "gelu":
        approximate = kwargs.pop("approximate", False)
        return Activation("gelu_tanh" if approximate else "gelu") if not kwargs else None
    return Activation(base) if not kwargs else None


def get(activation):
    """Returns the Activation for a name, a Keras/TF activation callable, or None (linear).

    Raises ValueError, naming the supported set, for anything else.
    """
    if isinstance(activation, Activation):
        return activation
    if isinstance(activation, dict) and set(activation) <= {"name", "slope"}:
        spec = get(activation.get("name"))
        return spec._replace(slope=float(activation.get("slope", spec.slope)))
    if activation is None or isinstance(activation, str):
        name = _ALIASES.get(activation, activation)
        if name in NAMES:
            return Activation(name)
    elif isinstance(activation, functools.partial):
        spec = _from_partial(activation)
        if spec is not None:
            return spec
    elif callable(activation):
        try:
            name = _CALLABLES.get(activation)
        except TypeError:  # unhashable callable
            name = None
        if name is not None:
            return Activation(name)
    raise ValueError(
        f"Unsupported activation {activation!r}: fused layers accept None or one of "
        f"{', '.join(NAMES)} (also 'swish'), or the matching keras.activations / tf.nn function."
    )


def serialize(activation):
    """What a layer config stores: the name, or {name, slope} for a non-default slope."""
    spec = get(activation)
    if spec.name == "leaky_relu" and spec.slope != DEFAULT_LEAKY_SLOPE:
        return {"name": spec.name, "slope": spec.slope}
    return spec.name


def reference(activation):
    """A plain TensorFlow implementation of the activation, for references and tests."""
    spec = get(activation)
    fns = {
        "linear": lambda z: z,
        "relu": tf.nn.relu,
        "relu6": tf.nn.relu6,
        "leaky_relu": lambda z: tf.nn.leaky_relu(z, alpha=spec.slope),
        "elu": tf.nn.elu,
        "selu": tf.nn.selu,
        "gelu": lambda z: tf.nn.gelu(z, approximate=False),
        "gelu_tanh": lambda z: tf.nn.gelu(z, approximate=True),
        "sigmoid": tf.nn.sigmoid,
        "tanh": tf.nn.tanh,
        "silu": tf.nn.silu,
        "softplus": tf.nn.softplus,
    }
    return fns[spec.name]
