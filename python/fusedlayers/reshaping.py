"""Flatten and Reshape: layers without variables that change the shape of each example."""

import math

import tensorflow as tf

from fusedlayers.layer import Layer


class _Reshaping(Layer):
    """A layer that keeps the batch dimension and reshapes the rest, whatever the dtype."""

    casts_inputs = False

    def __init__(self, name=None):
        super().__init__(name=name)

    def _reshape(self, inputs, example_shape):
        """`inputs` as [batch] + example_shape (a list of ints, -1 or scalar tensors)."""
        return tf.reshape(inputs, tf.concat([tf.shape(inputs)[:1], tf.stack(example_shape)], 0))

    def get_config(self):
        return {"name": self.name}


class Flatten(_Reshaping):
    """Reshapes [batch, d1, d2, ...] to [batch, d1 * d2 * ...] (rank 1 gives [batch, 1])."""

    def _call(self, inputs):
        if inputs.shape.rank is None:
            raise ValueError(f"{self.name}: the input's rank must be known, got shape {inputs.shape}")
        inner = inputs.shape[1:]
        if inner.is_fully_defined():
            size = inner.num_elements()
        else:  # not -1: a zero-sized batch leaves -1 undefined
            size = tf.reduce_prod(tf.shape(inputs)[1:])
        return self._reshape(inputs, [size])


class Reshape(_Reshaping):
    """Reshapes each example to `target_shape` (without the batch dimension; one -1 allowed)."""

    def __init__(self, target_shape, name=None):
        super().__init__(name=name)
        target_shape = tuple(target_shape) if isinstance(target_shape, (list, tuple)) else None
        if (
            target_shape is None
            or not all(isinstance(d, int) and not isinstance(d, bool) for d in target_shape)
            or any(d < -1 or d == 0 for d in target_shape)
            or target_shape.count(-1) > 1
        ):
            raise ValueError(
                f"target_shape must be a tuple of positive integers with at most one -1 "
                f"(the batch dimension left out), got {target_shape!r}"
            )
        self.target_shape = target_shape

    def _call(self, inputs):
        inner = inputs.shape[1:] if inputs.shape.rank is not None else None
        if inner is not None and inner.is_fully_defined():
            size = inner.num_elements()
            known = math.prod(d for d in self.target_shape if d != -1)
            fits = size % known == 0 if -1 in self.target_shape else size == known
            if not fits:
                raise ValueError(
                    f"{self.name}: cannot reshape examples of shape {inner} ({size} values) to "
                    f"target_shape {self.target_shape}"
                )
        return self._reshape(inputs, list(self.target_shape))

    def get_config(self):
        return {**super().get_config(), "target_shape": self.target_shape}
