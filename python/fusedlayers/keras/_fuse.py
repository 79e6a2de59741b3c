"""fuse(model) and fuse_in_place(model): swap the stock Dense/Conv2D/Conv2DTranspose of a model for fused twins."""

import contextlib
import dataclasses
import logging

import keras

from fusedlayers.keras import _support
from fusedlayers.keras.conv import Conv2D, Conv2DTranspose
from fusedlayers.keras.dense import Dense

_logger = logging.getLogger("fusedlayers")

# Exact stock classes only: a user's subclass of keras.layers.Dense may override call().
STOCK_TO_FUSED = {
    keras.layers.Dense: Dense,
    keras.layers.Conv2D: Conv2D,
    keras.layers.Conv2DTranspose: Conv2DTranspose,
}
_FUSED_CLASSES = tuple(STOCK_TO_FUSED.values())


@dataclasses.dataclass
class FuseReport:
    """What fuse() did: the layers swapped for fused twins, and those left stock with the reason."""

    swapped: list = dataclasses.field(default_factory=list)  # layer paths
    kept: list = dataclasses.field(default_factory=list)  # (layer path, reason)

    def __str__(self):
        lines = [f"fusedlayers.keras.fuse: {len(self.swapped)} layers swapped, "
                 f"{len(self.kept)} left stock"]
        lines += [f"  swapped  {path}" for path in self.swapped]
        lines += [f"  stock    {path}: {reason}" for path, reason in self.kept]
        return "\n".join(lines)


def _is_graph_model(layer):
    """Sequential and Functional models: rebuilt by keras.models.clone_model."""
    return isinstance(layer, (keras.Sequential, keras.src.models.functional.Functional))


def _layer_path(layer):
    """Where the layer's variables live ("outer/inner"): its scope when it was built.

    layer.path is the scope at construction, which misses the parent of a layer
    built by another layer (TimeDistributed's); the variables' paths have it.
    """
    if layer.weights:
        variable = layer.weights[0]
        return variable.path[: -len(variable.name) - 1]
    return layer.path


def _copy_state(source, target):
    """Builds `target` as `source` was built (in the same scope) and copies its weights."""
    if not source.built:
        return
    if not target.built:
        with contextlib.ExitStack() as scopes:
            for name in _layer_path(source).split("/")[:-1]:
                scopes.enter_context(keras.name_scope(name))
            target.build_from_config(source.get_build_config())
    target.set_weights(source.get_weights())


class _Fuser:
    """One fuse pass: remembers every layer it replaced, so a shared layer stays shared."""

    def __init__(self):
        self.report = FuseReport()
        self.replacements = {}  # id(original layer) -> its replacement
        self.copies = []  # (original, clone) whose state is copied once the clone is built

    def fused_twin(self, layer):
        """The fused layer replacing the stock `layer`, or None (reported) when unsupported."""
        fused_class = STOCK_TO_FUSED[type(layer)]
        config = layer.get_config()
        reason = _support.quantized_policy_reason(
            fused_class.__name__, layer.dtype_policy) or fused_class.unsupported_reason(config)
        if reason is not None:
            self.report.kept.append((_layer_path(layer), reason))
            return None
        twin = fused_class.from_config(config)
        self.report.swapped.append(_layer_path(layer))
        return twin

    def fused_twin_or_none(self, layer):
        """The fused twin of a supported stock layer; None (reported when stock-like) otherwise."""
        if type(layer) in STOCK_TO_FUSED:
            return self.fused_twin(layer)
        if isinstance(layer, tuple(STOCK_TO_FUSED)):
            self.report.kept.append((_layer_path(layer), (
                f"{type(layer).__name__} subclasses a stock layer and may override its call()")))
        return None

    def clone_layer(self, layer):
        """clone_model's clone_function: a fused twin, or a copy of any other layer."""
        clone = self.fused_twin_or_none(layer)
        if clone is None:
            try:
                clone = type(layer).from_config(layer.get_config())
            except Exception as error:  # noqa: BLE001  (any layer: keep it, say why)
                self.report.kept.append(
                    (_layer_path(layer), f"shared with the original model: it could not be cloned from "
                                 f"its config ({type(error).__name__}: {error})"))
                return layer
        self.copies.append((layer, clone))
        return clone

    def clone_graph_model(self, model):
        clone = keras.models.clone_model(model, clone_function=self.clone_layer, recursive=True)
        if model.built and not clone.built:
            clone.build_from_config(model.get_build_config())
        for original, copy in self.copies:
            _copy_state(original, copy)
            if not isinstance(copy, _FUSED_CLASSES):
                self.swap_attributes(copy)
        self.copies = []
        return clone

    def replacement(self, layer):
        """What an attribute holding `layer` should hold after fusing (maybe `layer` itself)."""
        if id(layer) in self.replacements:
            return self.replacements[id(layer)]
        new = layer
        twin = self.fused_twin_or_none(layer)
        if twin is not None:
            _copy_state(layer, twin)
            new = twin
        elif _is_graph_model(layer):
            new = self.clone_graph_model(layer)
        else:
            self.replacements[id(layer)] = layer  # before recursing: attributes may loop back
            self.swap_attributes(layer)
        self.replacements[id(layer)] = new
        return new

    def swap_attributes(self, owner):
        """Replaces, in place, the layers `owner` holds in attributes, lists and dicts."""
        for name, value in list(vars(owner).items()):
            if name == "_layers":  # the tracker's own list: updated by _retrack below
                continue
            if isinstance(value, keras.layers.Layer):
                new = self.replacement(value)
                if new is not value:
                    _retrack(owner, value, new)
                    _set_tracked_attribute(owner, name, new)
            elif isinstance(value, (list, dict)):
                keys = range(len(value)) if isinstance(value, list) else list(value)
                for key in keys:
                    item = value[key]
                    if isinstance(item, keras.layers.Layer):
                        new = self.replacement(item)
                        if new is not item:
                            _retrack(owner, item, new)
                            value[key] = new


def _retrack(owner, old, new):
    """Puts `new` where `old` was in the owner's tracked sub-layers (keeps the weight order)."""
    tracker = owner._tracker
    if tracker.is_in_store("layers", old) and not tracker.is_in_store("layers", new):
        tracker.replace_tracked_value("layers", old, new)


def _set_tracked_attribute(owner, name, value):
    locked = owner._tracker.locked
    owner._tracker.unlock()
    try:
        setattr(owner, name, value)
    finally:
        if locked:
            owner._tracker.lock()


def _finish(fuser, model):
    _logger.info("%s", fuser.report)
    model.fuse_report = fuser.report
    return model


def fuse(model):
    """Returns a copy of a Sequential or Functional `model` running fused layers.

    Every stock keras.layers.Dense / Conv2D / Conv2DTranspose whose configuration the
    fused layers support is replaced by its fusedlayers.keras twin (same name, config
    and weights); every other layer is copied with its weights. Nested models and layers
    that hold stock layers as attributes (TimeDistributed, custom layers) are fused too;
    a layer shared between several places stays shared. The original model is not
    changed. The returned model's `fuse_report` (also logged at INFO on the "fusedlayers"
    logger) lists what was swapped and what was left stock and why. A compiled model's
    copy is compiled with the same compile config (the optimizer starts afresh).

    For subclassed models, which cannot be copied from their config, use fuse_in_place.
    """
    if not _is_graph_model(model):
        raise ValueError(
            f"fuse() copies Sequential and Functional models; got a {type(model).__name__}, "
            f"a subclassed model: swap its layers with fusedlayers.keras.fuse_in_place(model)"
        )
    fuser = _Fuser()
    return _finish(fuser, fuser.clone_graph_model(model))


def fuse_in_place(model):
    """Swaps, in `model` itself, every supported stock layer held in an attribute.

    For subclassed models (and layers): attributes, lists and dicts of layers are
    walked recursively; a Sequential or Functional held in an attribute is replaced by
    its fused copy. Weights are copied into the fused twins, which keep the stock
    layers' names and weight order. Call it before compile() (a compiled model is
    recompiled from its compile config, so the optimizer starts afresh). Returns
    `model`, with its `fuse_report`.
    """
    fuser = _Fuser()
    if _is_graph_model(model):
        raise ValueError(
            f"{type(model).__name__} models are rebuilt, not edited in place: use "
            f"fusedlayers.keras.fuse(model), which returns the fused copy"
        )
    fuser.swap_attributes(model)
    if getattr(model, "compiled", False):
        model.compile_from_config(model.get_compile_config())
    return _finish(fuser, model)
