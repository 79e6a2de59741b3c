"""Channels-first tensors moved to channels-last and back, refusing shapes TensorFlow cannot count."""

import tensorflow as tf

TO_CHANNELS_LAST = (0, 2, 3, 1)
TO_CHANNELS_FIRST = (0, 3, 1, 2)
_INT64_MAX = 2**63 - 1


def transpose(x, perm, what):
    """tf.transpose(x, perm), or ValueError naming `what` when x's known shape, permuted,
    counts more than 2^63 - 1 elements before its first zero dimension.

    TensorFlow counts a shape's elements in order and aborts the process when a gradient
    tape records one whose running count leaves int64, even an empty one: x [2^62, 0, 1, 2]
    is fine, its channels-last form [2^62, 1, 2, 0] is not.
    """
    dims = [x.shape[i] for i in perm] if x.shape.rank == len(perm) else [None]
    if None not in dims:
        count = 1
        for d in dims:
            if d == 0:
                break
            count *= d
            if count > _INT64_MAX:
                raise ValueError(
                    f"{what}: expected a shape whose transposed form counts at most 2^63 - 1 "
                    f"elements up to its first zero dimension (TensorFlow aborts beyond), got "
                    f"{x.shape.as_list()}, transposed {dims}")
    return tf.transpose(x, perm)
