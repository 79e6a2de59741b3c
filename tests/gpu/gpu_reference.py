"""float64 numpy references for the CUDA harness: activations, dense, conv2d and
conv2d_transpose (NHWC, Keras kernel layouts), forward and backward."""

import math

import numpy as np

ACTIVATIONS = ("linear", "relu", "relu6", "leaky_relu", "elu", "selu", "gelu", "gelu_tanh",
               "sigmoid", "tanh", "silu", "softplus")
NEEDS_PREACTIVATION = ("gelu", "gelu_tanh", "silu", "softplus")
SELU_ALPHA, SELU_SCALE = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946
_erf = np.vectorize(math.erf)


def _sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def act(name, z, slope=0.2):
    if name == "linear":
        return z
    if name == "relu":
        return np.maximum(z, 0.0)
    if name == "relu6":
        return np.clip(z, 0.0, 6.0)
    if name == "leaky_relu":
        return np.where(z > 0, z, slope * z)
    if name == "elu":
        return np.where(z > 0, z, np.expm1(np.minimum(z, 0.0)))
    if name == "selu":
        return SELU_SCALE * np.where(z > 0, z, SELU_ALPHA * np.expm1(np.minimum(z, 0.0)))
    if name == "gelu":
        return 0.5 * z * (1.0 + _erf(z / math.sqrt(2.0)))
    if name == "gelu_tanh":
        return 0.5 * z * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (z + 0.044715 * z**3)))
    if name == "sigmoid":
        return _sigmoid(z)
    if name == "tanh":
        return np.tanh(z)
    if name == "silu":
        return z * _sigmoid(z)
    if name == "softplus":
        return np.logaddexp(0.0, z)
    raise ValueError(name)


def act_grad(name, y, z, slope=0.2):
    """d act / d z from the forward's stored y and z (so a kink falls on the same side
    as in the kernel, whatever rounding moved z)."""
    if name == "linear":
        return np.ones_like(y)
    if name == "relu":
        return (y > 0).astype(np.float64)
    if name == "relu6":
        return ((y > 0) & (y < 6)).astype(np.float64)
    if name == "leaky_relu":
        return np.where(y > 0, 1.0, slope)
    if name == "elu":
        return np.where(y > 0, 1.0, y + 1.0)
    if name == "selu":
        return np.where(y > 0, SELU_SCALE, y + SELU_SCALE * SELU_ALPHA)
    if name == "gelu":
        return 0.5 * (1.0 + _erf(z / math.sqrt(2.0))) + z * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    if name == "gelu_tanh":
        c = math.sqrt(2.0 / math.pi)
        t = np.tanh(c * (z + 0.044715 * z**3))
        return 0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * c * (1.0 + 3 * 0.044715 * z * z)
    if name == "sigmoid":
        return y * (1.0 - y)
    if name == "tanh":
        return 1.0 - y * y
    if name == "silu":
        s = _sigmoid(z)
        return s * (1.0 + z * (1.0 - s))
    if name == "softplus":
        return _sigmoid(z)
    raise ValueError(name)


def pad_before(big, small, kernel, stride, dilation, padding):
    """TensorFlow's padding before, for the convolution from big to small (and its
    transpose, which Conv2DBackpropInput pads the same way)."""
    if padding == "valid":
        return 0
    effective = (kernel - 1) * dilation + 1
    return max((small - 1) * stride + effective - big, 0) // 2


def _taps(big_hw, small_hw, kernel, strides, dilations, padding):
    """Per tap (ky, kx): the small positions whose window tap lands inside big, as
    (small y index, small x index, big y index, big x index) arrays."""
    pads = [pad_before(big_hw[i], small_hw[i], kernel[i], strides[i], dilations[i], padding)
            for i in range(2)]
    for ky in range(kernel[0]):
        for kx in range(kernel[1]):
            axes = []
            for i, k in enumerate((ky, kx)):
                small = np.arange(small_hw[i])
                big = small * strides[i] + k * dilations[i] - pads[i]
                inside = (big >= 0) & (big < big_hw[i])
                axes.append((small[inside], big[inside]))
            yield ky, kx, axes


def gather(big, kernel, small_hw, strides, dilations, padding):
    """conv2d: small[b, oy, ox, n] = sum big[b, iy, ix, c] kernel[ky, kx, c, n]."""
    out = np.zeros((big.shape[0], small_hw[0], small_hw[1], kernel.shape[3]))
    for ky, kx, ((oy, iy), (ox, ix)) in _taps(big.shape[1:3], small_hw, kernel.shape, strides,
                                                dilations, padding):
        out[:, oy[:, None], ox[None, :], :] += big[:, iy[:, None], ix[None, :], :] @ kernel[ky, kx]
    return out


def scatter(small, kernel, big_hw, strides, dilations, padding):
    """conv2d_transpose, the adjoint of gather: big[b, iy, ix, c] += small · kernelᵀ."""
    out = np.zeros((small.shape[0], big_hw[0], big_hw[1], kernel.shape[2]))
    for ky, kx, ((oy, iy), (ox, ix)) in _taps(big_hw, small.shape[1:3], kernel.shape, strides,
                                                dilations, padding):
        out[:, iy[:, None], ix[None, :], :] += small[:, oy[:, None], ox[None, :], :] @ kernel[ky, kx].T
    return out


def kernel_grad(big, small_grad, kernel_shape, strides, dilations, padding):
    """dkernel[ky, kx, c, n] = sum over positions of big's tap slice ⊗ small_grad."""
    dk = np.zeros(kernel_shape)
    for ky, kx, ((oy, iy), (ox, ix)) in _taps(big.shape[1:3], small_grad.shape[1:3], kernel_shape,
                                                strides, dilations, padding):
        b = big[:, iy[:, None], ix[None, :], :].reshape(-1, kernel_shape[2])
        s = small_grad[:, oy[:, None], ox[None, :], :].reshape(-1, kernel_shape[3])
        dk[ky, kx] = b.T @ s
    return dk
