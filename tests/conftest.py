"""Shared test setup: quiet TensorFlow, fixed seeds, and tolerance per dtype."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The stock references run on TensorFlow's oneDNN kernels. TensorFlow turns oneDNN on by
# default only on CPUs with VNNI (AVX-512 or AVX), AVX-512 BF16 or AMX; elsewhere (an
# AVX2-only Zen 3, say) its Eigen kernels reject what Keras accepts: dilations in
# Conv2DBackpropInput (every dilated Conv2DTranspose and every dilated conv's input
# gradient), channels_first convolutions, and an empty transposed-conv output. Set before TensorFlow loads, and
# inherited by the tests' child processes; TF_ENABLE_ONEDNN_OPTS=0 still wins.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

# Relative tolerances of the fused result against a reference computed in the same
# dtype: 16-bit types round each stored value, so they are compared loosely; float64
# allows for tf.nn.gelu, whose float64 kernel is off by up to 5e-9.
RTOL = {tf.float64: 1e-8, tf.float32: 1e-5, tf.float16: 2e-2, tf.bfloat16: 6e-2}
FLOAT_DTYPES = [tf.float32, tf.float64, tf.bfloat16, tf.float16]


def assert_close(actual, expected, dtype=tf.float32, rtol=None):
    """|actual - expected| <= rtol * max(1, max|expected|), elementwise, in float64."""
    actual = np.asarray(tf.cast(actual, tf.float64))
    expected = np.asarray(tf.cast(expected, tf.float64))
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    if actual.size == 0:
        return
    rtol = RTOL[tf.as_dtype(dtype)] if rtol is None else rtol
    scale = max(1.0, float(np.max(np.abs(expected))))
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rtol * scale)


@pytest.fixture(autouse=True)
def _seed():
    np.random.seed(1234)
    tf.random.set_seed(1234)
    yield
