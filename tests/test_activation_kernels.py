"""The float activation loops on every ISA against float64 references, in ulps."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from fusedlayers import _native
from test_engine import supported_isas

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
SQRT_2_OVER_PI = 0.79788456080286535587989211986876
GELU_TANH_COEFF = 0.044715
LEAKY_SLOPES = (0.2, -0.3)

# Largest (forward, derivative) error allowed, in float32 ulps of the reference's scale
# (the value, or the sum of the formula's terms' magnitudes where the formula cancels:
# see derivative_reference). gelu_tanh's derivative reaches 14 ulps of 2^-149 only
# around z = -10.7, where 2 z du/dz (~300) multiplies a denormal sigmoid.
MAX_ULPS = {
    "linear": (0, 0), "relu": (0, 0), "relu6": (0, 0), "leaky_relu": (1, 0),
    "elu": (2, 1), "selu": (3, 1), "gelu": (7, 7), "gelu_tanh": (4, 16),
    "sigmoid": (3, 2), "tanh": (2, 1), "silu": (4, 5), "softplus": (3, 3),
}


def sigmoid(z):
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e)), np.where(z >= 0, e / (1 + e), 1 / (1 + e))


def erfc(x):
    return np.frompyfunc(math.erfc, 1, 1)(x).astype(np.float64)


def gelu_tanh_sigmoid(z):
    """gelu_tanh = 0.5 z (1 + tanh(u)) = z sigmoid(2u): no cancellation for negative z."""
    return sigmoid(2 * SQRT_2_OVER_PI * (z + GELU_TANH_COEFF * z**3))


def forward_reference(name, z, slope):
    """(act(z), scale) in float64: the scalar table's formulas."""
    positive = np.where(z > 0, z, 0.0)
    if name == "linear":
        value = z
    elif name == "relu":
        value = positive
    elif name == "relu6":
        value = np.where(z > 0, np.where(z < 6, z, 6.0), 0.0)
    elif name == "leaky_relu":
        value = np.where(z > 0, z, np.float64(np.float32(slope)) * z)
    elif name == "elu":
        value = np.where(z > 0, z, np.expm1(z))
    elif name == "selu":
        value = SELU_SCALE * np.where(z > 0, z, SELU_ALPHA * np.expm1(z))
    elif name == "gelu":
        value = 0.5 * z * erfc(-z / math.sqrt(2))
    elif name == "gelu_tanh":
        value = z * gelu_tanh_sigmoid(z)[0]
    elif name == "sigmoid":
        value = sigmoid(z)[0]
    elif name == "tanh":
        value = np.tanh(z)
    elif name == "silu":
        value = z * sigmoid(z)[0]
    elif name == "softplus":
        value = np.log1p(np.exp(-np.abs(z))) + positive
    return value, np.abs(value)


def derivative_reference(name, y, z, slope):
    """(act'(y, z), scale): scale sums the terms' magnitudes where the formula cancels."""
    one = np.ones_like(y)
    slope = np.float64(np.float32(slope))
    if name == "linear":
        value = one
    elif name == "relu":
        value = np.where(y > 0, 1.0, 0.0)
    elif name == "relu6":
        value = np.where((y > 0) & (y < 6), 1.0, 0.0)
    elif name == "leaky_relu":
        value = np.where((z if slope < 0 else y) > 0, 1.0, slope)
    elif name == "elu":
        return np.where(y > 0, 1.0, y + 1), np.where(y > 0, 1.0, np.abs(y) + 1)
    elif name == "selu":
        scale_alpha = SELU_SCALE * SELU_ALPHA
        return (np.where(y < 0, y + scale_alpha, SELU_SCALE),
                np.where(y < 0, np.abs(y) + scale_alpha, SELU_SCALE))
    elif name == "gelu":
        half_erfc = 0.5 * erfc(-z / math.sqrt(2))
        z_phi = z * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
        return half_erfc + z_phi, half_erfc + np.abs(z_phi)
    elif name == "gelu_tanh":
        s, sc = gelu_tanh_sigmoid(z)
        term = 2 * z * s * sc * SQRT_2_OVER_PI * (1 + 3 * GELU_TANH_COEFF * z * z)
        return s + term, s + np.abs(term)
    elif name == "sigmoid":
        value = y * (1 - y)
    elif name == "tanh":
        return 1 - y * y, 1 + y * y
    elif name == "silu":
        s, sc = sigmoid(z)
        return s * (1 + z * sc), s * (1 + np.abs(z) * sc)
    elif name == "softplus":
        value = sigmoid(z)[0]
    return value, np.abs(value)


def grid():
    """Dense and logarithmic grids, the edge regions, and random bit patterns (every
    class of float32: denormals, infinities, NaNs)."""
    magnitudes = np.logspace(-45, 38.5, 20001)
    specials = [0.0, -0.0, 1e-45, 1e-40, 1.1754944e-38, 1e-30, 1e-8, 1e-4, 0.3465, 0.5, 0.625,
                0.6931, 1.0, 2.0, 6.0, 9.0, 10.0, 13.0, 14.2, 20.0, 87.3, 88.0, 88.72, 88.8,
                89.0, 100.0, 103.9, 104.0, 110.0, 1e10, 1e13, 1e20, 3.4e38, np.inf]
    parts = [np.linspace(-110, 110, 220001), np.linspace(-1, 1, 20001), magnitudes, -magnitudes,
             np.array(specials), -np.array(specials), [np.nan]]
    bits = np.random.default_rng(0).integers(0, 2**32, 100000, dtype=np.uint64).astype(np.uint32)
    return np.concatenate([np.asarray(p, np.float32) for p in parts] + [bits.view(np.float32)])


def ulp_error(got, value, scale, inputs):
    """Largest |got - value| in float32 ulps of scale, after checking NaN and inf agree
    (inf where the value rounds past float32's range). Where the formula itself is NaN
    at an infinite input (inf * 0), any value passes. Below float32's normal range the
    ulp is at least 2^-149 |z|: an intermediate's denormal rounding, times the |z| the
    formulas multiply it by (the scalar table loses the same)."""
    got = got.astype(np.float64)
    checked = ~(np.isnan(value) & np.isinf(inputs))
    got, value, scale, inputs = got[checked], value[checked], scale[checked], inputs[checked]
    np.testing.assert_array_equal(np.isnan(got), np.isnan(value))
    infinite = np.isinf(value.astype(np.float32))
    np.testing.assert_array_equal(got[infinite], value.astype(np.float32)[infinite])
    finite = np.isfinite(value) & ~infinite
    spacing = np.spacing(scale[finite].astype(np.float32)).astype(np.float64)
    spacing = np.maximum(spacing, 2.0**-149 * np.fmax(1, np.abs(inputs[finite])))
    err = np.abs(got[finite] - value[finite]) / spacing
    return float(err.max(initial=0.0))


def measure_errors():
    """{activation (slope for leaky_relu): [forward ulps, derivative ulps]}."""
    z32 = grid()
    with np.errstate(invalid="ignore"):
        z = z32.astype(np.float64)
    errors = {}
    for name in _native.activation_names():
        for slope in LEAKY_SLOPES if name == "leaky_relu" else LEAKY_SLOPES[:1]:
            with np.errstate(all="ignore"):
                value, scale = forward_reference(name, z, slope)
                forward_ulps = ulp_error(_native.activation_forward(name, z32, slope), value, scale, z)
                y32 = value.astype(np.float32)
                d_value, d_scale = derivative_reference(name, y32.astype(np.float64), z, slope)
                d_got = _native.activation_derivative(name, y32, z32, slope)
                derivative_ulps = ulp_error(d_got, d_value, d_scale, z)
            key = name if name != "leaky_relu" else f"{name}({slope})"
            errors[key] = [forward_ulps, derivative_ulps]
    return errors


@pytest.mark.parametrize("isa", supported_isas())
def test_accuracy_on_each_isa(isa):
    """Every activation, forward and derivative, in a fresh process per forced ISA."""
    env = dict(os.environ, FUSEDLAYERS_ISA=isa, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, __file__], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["isa"] == isa
    for key, (forward_ulps, derivative_ulps) in report["errors"].items():
        bound = MAX_ULPS[key.split("(")[0]]
        assert forward_ulps <= bound[0] and derivative_ulps <= bound[1], (key, report["errors"][key])


@pytest.mark.parametrize("name", _native.activation_names())
def test_any_length_and_offset_matches_whole_vectors(name):
    """Partial vectors at the end of a run (zero-padded copies) give the same bits as
    full ones, for every length and misalignment."""
    rng = np.random.default_rng(1)
    z = rng.uniform(-8, 8, 200).astype(np.float32)
    y = _native.activation_forward(name, z)
    d = _native.activation_derivative(name, y, z)
    for start in range(5):
        for length in range(0, 70):
            part = slice(start, start + length)
            np.testing.assert_array_equal(_native.activation_forward(name, z[part]), y[part])
            np.testing.assert_array_equal(_native.activation_derivative(name, y[part], z[part]),
                                          d[part])


def test_derivative_without_preactivation_reads_y_only():
    y = np.linspace(-0.9, 5, 37).astype(np.float32)
    np.testing.assert_array_equal(_native.activation_derivative("elu", y), np.where(y > 0, 1, y + 1))
    with pytest.raises(ValueError, match="pre-activation"):
        _native.activation_derivative("gelu", y)
    with pytest.raises(ValueError, match="activation must be one of"):
        _native.activation_forward("swish2", y)


def test_dispatches_with_the_gemm_engine():
    assert _native.activation_kernel_isa() == _native.kernel_isa()


if __name__ == "__main__":
    print(json.dumps({"isa": _native.activation_kernel_isa(), "errors": measure_errors()}))
