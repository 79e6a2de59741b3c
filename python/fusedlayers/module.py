"""Module: a tf.Module with a layer dictionary, so a model mentions each layer once, where used."""

import functools
import inspect

import tensorflow as tf

from fusedlayers.layer import Layer, collect_losses, same_configuration


class Module(tf.Module):
    """A tf.Module whose `get(name, ctor, *args, **kwargs)` makes sub-layers on first use.

        class AutoEncoder(fl.Module):
            def encode(self, image):
                hidden = self.get("enc1", fl.Conv2D, 32, 4, 2, activation="elu")(image)
                ...

    The first `get` of a name calls `ctor(*args, **kwargs)` (inside this module's name scope,
    with `name=name` unless given) and keeps the layer; later ones return that same layer, so
    using a name twice shares its weights. The layers are tracked under their names:
    `variables`, `trainable_variables`, `submodules` and checkpoints see them (checkpoint path
    `<this module>/_layers/<name>/...`), and a checkpoint restored before they exist is applied
    when they are built.
    """

    # The arguments kept for comparison hold unbuilt layers: not this module's submodules.
    _TF_MODULE_IGNORED_PROPERTIES = tf.Module._TF_MODULE_IGNORED_PROPERTIES | {"_layer_specs"}

    def __init__(self, name=None):
        super().__init__(name=name)
        self._layers = {}
        self._init_layer_specs()

    @tf.__internal__.tracking.no_automatic_dependency_tracking
    def _init_layer_specs(self):
        # name -> (ctor, args, kwargs) as first passed to get(): compared, never saved.
        self._layer_specs = {}

    def get(self, name, ctor, /, *args, **kwargs):
        """The layer called `name`, made by `ctor(*args, **kwargs)` on the first request."""
        spec = (ctor, args, kwargs)
        if name in self._layers:
            if not _equal(self._layer_specs[name], spec):
                raise ValueError(
                    f"{self.name}.get({name!r}): this name already holds "
                    f"{_format_call(*self._layer_specs[name])}, but is now asked for "
                    f"{_format_call(*spec)}; use another name for a different layer, or the "
                    f"same constructor and arguments to reuse it"
                )
            return self._layers[name]
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(
                f"{self.name}.get: name must be a Python identifier (it names the layer's "
                f"variables and checkpoint entries), got {name!r}"
            )
        if not callable(ctor):
            raise TypeError(f"{self.name}.get({name!r}): ctor must be callable, got {ctor!r}")
        call_kwargs = dict(kwargs)
        if "name" not in call_kwargs and _accepts_name(ctor):
            call_kwargs["name"] = name
        with self.name_scope:
            layer = ctor(*args, **call_kwargs)
        self._layer_specs[name] = spec
        self._layers[name] = layer
        return self._layers[name]

    @property
    def layers(self):
        """The layers made by `get` so far, by name, in order of creation."""
        return dict(self._layers)

    @property
    def losses(self):
        """The regularization losses of every sub-layer (each counted once)."""
        return collect_losses(self)


def _accepts_name(ctor):
    try:
        params = inspect.signature(ctor).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "name" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def _equal(a, b):
    """Whether two constructor arguments say the same. Layers, and Keras initializers,
    regularizers and constraints, compare by configuration (a call site makes new ones each
    time); partials, lists, tuples and dicts item by item; arrays and tensors, which have no
    plain truth value, by identity."""
    if a is b:
        return True
    if type(a) is not type(b) or isinstance(a, type):
        return _plain_equal(a, b)
    if isinstance(a, Layer):
        return same_configuration(a, b)
    if callable(getattr(a, "get_config", None)):
        return a.get_config() == b.get_config()
    if isinstance(a, functools.partial):
        return _equal((a.func, a.args, a.keywords), (b.func, b.args, b.keywords))
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(map(_equal, a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    return _plain_equal(a, b)


def _plain_equal(a, b):
    try:
        return bool(a == b)
    except (TypeError, ValueError, tf.errors.InvalidArgumentError):
        return False


def _format_call(ctor, args, kwargs):
    name = getattr(ctor, "__qualname__", None) or repr(ctor)
    parts = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
    return f"{name}({', '.join(parts)})"
