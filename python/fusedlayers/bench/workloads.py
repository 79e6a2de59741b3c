"""Workloads: one layer (or matmul) built twice, fused and stock Keras, with the same weights."""

import dataclasses
import functools
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

import fusedlayers as fl


class Unavailable(Exception):
    """A fused layer or op the case needs is not in this build of fusedlayers."""


def require(path):
    """fl.<path> (e.g. "Conv2D", "ops.fused_conv2d"), or Unavailable saying it is missing."""
    obj = fl
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise Unavailable(f"fl.{path} is not in this build of fusedlayers")
    return obj


@dataclasses.dataclass
class Contest:
    """What is timed: fused(*args) against stock(*args).

    The fused outputs are checked against reference(*reference_args): the stock side
    itself in float32, and for 16-bit cases the stock computation in float32 from the
    same (rounded) weights and inputs, because stock rounds to 16 bits after every op
    and its long sums (bias gradients over batch × pixels) can be off by 10% or more.
    """

    fused: Callable
    stock: Callable
    args: tuple
    reference: Callable = None
    reference_args: tuple = None

    def __post_init__(self):
        if self.reference is None:
            self.reference, self.reference_args = self.stock, self.args


def as_float32(args):
    return tuple(tf.cast(a, tf.float32) for a in args)


def keras_activation(name):
    """The activation as both Keras and fused layers take it (Keras has no 'gelu_tanh' name)."""
    if name == "gelu_tanh":
        return functools.partial(keras.activations.gelu, approximate=True)
    return name


def on_coarse_grid(values):
    """`values` rounded to 5 significant bits on one power-of-two grid for the tensor.

    Products and sums of such tensors are exact in float32 (for depths up to 2^14), so
    fused and stock compute identical pre-activations whatever their summation order. With
    plain random floats, some pre-activation among millions lands within rounding of zero,
    the two sides round it to opposite signs, and a relu's derivative then differs on that
    element's whole gradient: the element-wise check at batch 4096 failed about one draw
    in four. The values' magnitudes, and so the timings, are those of the random floats.
    """
    values = np.asarray(values, dtype=np.float32)
    largest = float(np.max(np.abs(values), initial=0.0))
    if largest == 0.0:
        return values
    step = 2.0 ** (np.floor(np.log2(largest)) - 4)
    return (np.round(values / step) * step).astype(np.float32)


def random_tensor(rng, shape, dtype, scale=1.0):
    return tf.cast(on_coarse_grid(rng.normal(0.0, scale, size=shape)), dtype)


def forward(fn):
    return lambda x: fn(x)


def forward_backward(fn, variables):
    """x, dy -> [dx, d(variables)...]: the layer's forward and its whole backward."""

    def run(x, dy):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = fn(x)
        return tape.gradient(y, [x, *variables], output_gradients=dy)

    return run


@dataclasses.dataclass(frozen=True)
class LayerSpec:
    """A layer with Keras's constructor, built fused and as keras.layers.<kind>.

    The fused side is fl.<kind> (the tf.Module) or, with api="keras", the Keras drop-in
    fl.keras.<kind>. `options` are the constructor arguments besides the activation and
    dtype (units or filters, kernel_size, strides, padding), identical for both sides.
    """

    kind: str  # "Dense", "Conv2D" or "Conv2DTranspose"
    input_shape: tuple  # one example's shape, without the batch
    options: tuple  # sorted (name, value) pairs
    api: str = "fl"  # "fl" or "keras"

    @classmethod
    def make(cls, kind, input_shape, api="fl", **options):
        return cls(kind, tuple(input_shape), tuple(sorted(options.items())), api)

    @property
    def layer(self):
        return self.kind.lower()

    def label(self):
        o = dict(self.options)
        if self.kind == "Dense":
            return f"{self.input_shape[-1]}→{o['units']}"
        shape = "×".join(str(d) for d in self.input_shape)
        return f"{shape}→{o['filters']} k{o['kernel_size']} s{o['strides']} {o['padding']}"

    def output_shape(self, batch):
        layer = getattr(keras.layers, self.kind)(**dict(self.options))
        return tuple(layer.compute_output_shape((batch, *self.input_shape)))

    def flops_forward(self, batch):
        """Multiply-adds × 2 of the matmul or convolution (bias and activation not counted).

        Conv2DTranspose counts every input pixel scattered through the whole kernel,
        including the taps that 'same' padding crops.
        """
        o = dict(self.options)
        if self.kind == "Dense":
            return 2 * batch * self.input_shape[-1] * o["units"]
        k = o["kernel_size"] ** 2
        cin = self.input_shape[-1]
        if self.kind == "Conv2D":
            _, ho, wo, cout = self.output_shape(batch)
            return 2 * batch * ho * wo * cout * k * cin
        h, w, _ = self.input_shape
        return 2 * batch * h * w * cin * k * o["filters"]

    def _pair(self, fused_cls, activation, dtype):
        kwargs = dict(self.options, activation=keras_activation(activation), dtype=dtype)
        return fused_cls(**kwargs), getattr(keras.layers, self.kind)(**kwargs)

    def build_layers(self, batch, dtype, activation, rng):
        """(fused layer, stock layer, x): built, with the same random weights and biases."""
        fused, stock = self._pair(
            require(self.kind if self.api == "fl" else f"keras.{self.kind}"), activation, dtype)
        x = random_tensor(rng, (batch, *self.input_shape), dtype)
        stock.build(x.shape)
        stock.kernel.assign(tf.cast(on_coarse_grid(tf.cast(stock.kernel, tf.float32)), dtype))
        # Keras initializes biases to zero; random ones make the comparison check the bias.
        stock.bias.assign(random_tensor(rng, stock.bias.shape, dtype, 0.5))
        copy_weights(stock, fused, x.shape)
        return fused, stock, x

    def float32_twin(self, layer, activation, input_shape):
        """A float32 stock layer holding `layer`'s weights."""
        twin, _ = self._pair(getattr(keras.layers, self.kind), activation, "float32")
        copy_weights(layer, twin, input_shape)
        return twin

    def contest(self, pass_, batch, dtype, activation, rng):
        fused, stock, x = self.build_layers(batch, dtype, activation, rng)
        def run(layer):
            if pass_ == "fwd":
                return forward(layer)
            return forward_backward(layer, [layer.kernel, layer.bias])

        args = (x,) if pass_ == "fwd" else (x, random_tensor(rng, self.output_shape(batch), dtype))
        contest = Contest(run(fused), run(stock), args)
        if dtype != "float32":
            contest.reference = run(self.float32_twin(stock, activation, x.shape))
            contest.reference_args = as_float32(args)
        return contest


def copy_weights(source, target, input_shape):
    """Builds `target` for `input_shape` and gives it `source`'s kernel and bias (cast)."""
    target.build(input_shape)
    for name in ("kernel", "bias"):
        variable = getattr(target, name)
        variable.assign(tf.cast(tf.convert_to_tensor(getattr(source, name)), variable.dtype))


@dataclasses.dataclass(frozen=True)
class GemmSpec:
    """The engine's plain GEMM (fused_dense, no bias, linear) against tf.matmul: x[M,K] @ w[K,N]."""

    k: int
    n: int
    kind = "GEMM"
    layer = "gemm"

    def label(self):
        return f"{self.k}→{self.n}"

    def flops_forward(self, batch):
        return 2 * batch * self.k * self.n

    def contest(self, pass_, batch, dtype, activation, rng):
        if pass_ != "fwd" or activation != "linear":
            raise ValueError("the GEMM workload is forward and linear only")
        fused_dense = require("ops.fused_dense")
        w = tf.Variable(random_tensor(rng, (self.k, self.n), dtype, self.k ** -0.5))
        x = random_tensor(rng, (batch, self.k), dtype)
        w32 = tf.cast(w, tf.float32)
        return Contest(lambda x: fused_dense(x, w), lambda x: tf.matmul(x, w), (x,),
                       reference=lambda x: tf.matmul(x, w32), reference_args=as_float32((x,)))
