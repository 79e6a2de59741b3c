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

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import fusedlayers as fl  # noqa: E402
from fusedlayers._loader import gen_ops  # noqa: E402

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


def _dense_tape(x, kernel, bias=None, dy=None, activation=None):
    """Forward and backward of fl.ops.fused_dense (the gradient runs the fused grad op)."""
    watched = [x, kernel] + ([bias] if bias is not None else [])
    with tf.GradientTape() as tape:
        tape.watch(watched)
        y = fl.ops.fused_dense(x, kernel, bias, activation=activation)
    return [y] + tape.gradient(y, watched, output_gradients=dy)


def _layer_calls(layer, inputs):
    """Calls a layer on each input in turn (the first call builds it)."""
    return [layer(x) for x in inputs]


def _layer_tape(layer, x):
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
    return [y] + tape.gradient(y, [x] + list(layer.trainable_variables))


TARGETS = {
    "fused_dense": fl.ops.fused_dense,
    "fused_dense_tape": _dense_tape,
    "raw_dense": gen_ops.fused_layers_fused_dense,
    "raw_dense_grad": gen_ops.fused_layers_fused_dense_grad,
    "dense_layer": _layer_calls,
    "dense_layer_tape": _layer_tape,
}
# Layer targets get `layer`, constructed eagerly from the case's "ctor" (a tf.function may
# trace twice, and must not construct a second layer with fresh variables).
LAYER_CLASSES = {"dense_layer": fl.Dense, "dense_layer_tape": fl.Dense}


def signature_of(tensor, mode):
    if mode == "function_unknown_rank":
        return tf.TensorSpec(None, tensor.dtype)
    if mode == "function_unknown_dims":
        return tf.TensorSpec([None] * tensor.shape.rank, tensor.dtype)
    return tf.TensorSpec(tensor.shape, tensor.dtype)


def call(target, mode, kwargs):
    """Runs target(**kwargs) eagerly, or inside a tf.function taking every tensor as input."""
    fn = TARGETS[target]
    if "ctor" in kwargs:
        kwargs = dict(kwargs)
        kwargs["layer"] = LAYER_CLASSES[target](**kwargs.pop("ctor"))
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
        return {"outcome": "error", "type": type(e).__name__, "message": str(e)[:2000]}
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
