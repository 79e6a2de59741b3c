"""Fuzz worker: a long-lived child process that runs fuzz cases and reports how each ended.

Protocol: one JSON case per line on stdin, one JSON reply per line on the protocol fd
(the original stdout; fd 1 is pointed at stderr so library prints cannot corrupt it).
A case names a target (an op or layer call), a mode (eager, or traced by tf.function
with full, unknown-dimension or unknown-rank input signatures) and its arguments, where
{"shape": [...], "dtype": "float32"} stands for a tensor. Reply: {"outcome": "ok",
"shapes": [...]} or {"outcome": "error", "type": ..., "message": ...}, or
{"outcome": "unconstructible"} when TensorFlow itself cannot make an input tensor.
The process dies only if the library crashes, which is what the parent detects.
"""

import json
import os
import resource
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# TensorFlow's plain CPU allocator, which refuses an allocation over the address-space
# cap below at once: oneDNN's (the default where it is on) waits 10 s for memory to be
# freed before each refusal, so a case asking for a huge but representable output spent
# 20 s per attempt (e.g. Dense(1) on x [2^31 - 1, 0] under a tape in tf.function: y and
# the tape's ones), twice with the stock twin, and was taken for a hang. Our ops do not
# use oneDNN; only the stock twins' kernels change.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import fusedlayers as fl  # noqa: E402
import fusedlayers.keras as flk  # noqa: E402
from fusedlayers._loader import gen_ops  # noqa: E402
from fuzz_client import CLEAN_ERRORS  # noqa: E402

# Inputs are materialized here, so the case generators must keep them small (huge
# dimensions only ever come with a zero dimension in the same tensor).
MAX_INPUT_ELEMENTS = 1 << 20
# Outputs the ops allocate from huge-but-representable shapes must fail cleanly
# rather than eat the machine: the address space is capped a few GiB above startup.
ADDRESS_SPACE_HEADROOM = 4 << 30


def is_tensor_spec(value):
    return isinstance(value, dict) and set(value) == {"shape", "dtype"}


def make_tensor(spec, rng):
    shape, dtype = spec["shape"], tf.as_dtype(spec["dtype"])
    count = int(np.prod(shape, dtype=object))
    if count > MAX_INPUT_ELEMENTS:
        raise RuntimeError(f"fuzz case bug: input {shape} has {count} elements")
    if count == 0:
        return tf.zeros(shape, dtype)
    values = rng.uniform(-2.0, 2.0, size=shape)
    return tf.cast(values, dtype) if dtype != tf.bool else tf.constant(values > 0)


def materialize(args, rng):
    """Replaces every tensor spec in the (nested) arguments by a tensor."""
    if is_tensor_spec(args):
        return make_tensor(args, rng)
    if isinstance(args, dict):
        return {k: materialize(v, rng) for k, v in args.items()}
    if isinstance(args, list):
        return [materialize(v, rng) for v in args]
    return args


def _tape(op):
    """Forward and backward of an fl.ops function (the gradient runs the fused grad op)."""

    def run(x, kernel, bias=None, dy=None, **attrs):
        watched = [x, kernel] + ([bias] if bias is not None else [])
        with tf.GradientTape() as tape:
            tape.watch(watched)
            y = op(x, kernel, bias, **attrs)
        return [y] + tape.gradient(y, watched, output_gradients=dy)

    return run


def _layer_calls(layer, inputs):
    """Calls a layer on each input in turn (the first call builds it)."""
    return [layer(x) for x in inputs]


def _layer_tape(layer, x):
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
    return [y] + tape.gradient(y, [x] + list(layer.trainable_variables))


OPS = {
    "dense": (fl.ops.fused_dense, gen_ops.fused_layers_fused_dense,
              gen_ops.fused_layers_fused_dense_grad),
    "conv2d": (fl.ops.fused_conv2d, gen_ops.fused_layers_fused_conv2d,
               gen_ops.fused_layers_fused_conv2d_grad),
    "conv2d_transpose": (fl.ops.fused_conv2d_transpose,
                         gen_ops.fused_layers_fused_conv2d_transpose,
                         gen_ops.fused_layers_fused_conv2d_transpose_grad),
}
TARGETS = {}
for _name, (_op, _raw, _raw_grad) in OPS.items():
    TARGETS.update({f"fused_{_name}": _op, f"fused_{_name}_tape": _tape(_op),
                    f"raw_{_name}": _raw, f"raw_{_name}_grad": _raw_grad})
# Layer targets get `layer`, constructed eagerly from the case's "ctor" (a tf.function may
# trace twice, and must not construct a second layer with fresh variables).
LAYER_CLASSES = {"dense": fl.Dense, "conv2d": fl.Conv2D, "conv2d_transpose": fl.Conv2DTranspose,
                 "keras_dense": flk.Dense, "keras_conv2d": flk.Conv2D,
                 "keras_conv2d_transpose": flk.Conv2DTranspose}
for _name in LAYER_CLASSES:
    TARGETS.update({f"{_name}_layer": _layer_calls, f"{_name}_layer_tape": _layer_tape})
# The stock twins of the Keras drop-ins: where a drop-in fails, the same case is run with
# the stock layer, whose error type the drop-in may share (it mirrors stock's checks).
STOCK_CLASSES = {"keras_dense": keras.layers.Dense, "keras_conv2d": keras.layers.Conv2D,
                 "keras_conv2d_transpose": keras.layers.Conv2DTranspose}


def layer_name(target):
    return target.removesuffix("_tape").removesuffix("_layer")


def signature_of(tensor, mode):
    if mode == "function_unknown_rank":
        return tf.TensorSpec(None, tensor.dtype)
    if mode == "function_unknown_dims":
        return tf.TensorSpec([None] * tensor.shape.rank, tensor.dtype)
    return tf.TensorSpec(tensor.shape, tensor.dtype)


def call(target, mode, kwargs, layer_class=None):
    """Runs target(**kwargs) eagerly, or inside a tf.function taking every tensor as input."""
    fn = TARGETS[target]
    if "ctor" in kwargs:
        kwargs = dict(kwargs)
        layer_class = layer_class or LAYER_CLASSES[layer_name(target)]
        kwargs["layer"] = layer_class(**kwargs.pop("ctor"))
    if mode == "eager":
        return fn(**kwargs)
    flat = tf.nest.flatten(kwargs, expand_composites=False)
    positions = [i for i, v in enumerate(flat) if isinstance(v, tf.Tensor)]
    tensors = [flat[i] for i in positions]

    def traced(*args):
        leaves = list(flat)
        for i, value in zip(positions, args):
            leaves[i] = value
        return fn(**tf.nest.pack_sequence_as(kwargs, leaves))

    graph_fn = tf.function(traced, input_signature=[signature_of(t, mode) for t in tensors])
    return graph_fn(*tensors)


def output_shapes(result):
    return [list(t.shape) if t is not None else None
            for t in tf.nest.flatten(result) if t is None or hasattr(t, "shape")]


def run_case(case):
    rng = np.random.default_rng(case.get("seed", 0))
    try:
        kwargs = materialize(case["args"], rng)
    except (tf.errors.InvalidArgumentError, ValueError):
        return {"outcome": "unconstructible"}
    try:
        result = call(case["target"], case["mode"], kwargs)
        shapes = output_shapes(result)
    except Exception as e:  # noqa: BLE001  (the parent judges which errors are clean)
        reply = {"outcome": "error", "type": type(e).__name__, "message": str(e)[:2000]}
        stock_class = STOCK_CLASSES.get(layer_name(case["target"]))
        # The twin only excuses an unclean error type, so it runs only for one: stock
        # TensorFlow itself aborts on some inputs ours refuses cleanly (Dense on x
        # [2^62, 0] under a tape in tf.function: its tape records MatMul's overflowing
        # static shape), which would be reported as our crash.
        if stock_class is not None and reply["type"] not in CLEAN_ERRORS:
            try:
                call(case["target"], case["mode"], kwargs, stock_class)
                reply["stock_type"] = None
            except Exception as stock_error:  # noqa: BLE001
                reply["stock_type"] = type(stock_error).__name__
        return reply
    return {"outcome": "ok", "shapes": shapes}


def cap_address_space():
    """Caps virtual memory (not under ASan, whose shadow needs terabytes of it)."""
    if "asan" in os.environ.get("LD_PRELOAD", ""):
        return
    with open("/proc/self/status") as f:
        vm_size_kib = next(int(line.split()[1]) for line in f if line.startswith("VmSize:"))
    limit = vm_size_kib * 1024 + ADDRESS_SPACE_HEADROOM
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.RLIM_INFINITY))


def main():
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    tf.zeros([1]) + 1  # initialize the runtime before capping memory
    cap_address_space()
    protocol.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        reply = run_case(json.loads(line))
        protocol.write(json.dumps(reply) + "\n")


if __name__ == "__main__":
    main()
