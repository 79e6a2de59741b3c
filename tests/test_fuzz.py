"""Property-based fuzzing: valid op and layer calls mutated in one or two aspects never crash or hang.

Each case runs in a long-lived child process (fuzz_worker.py) so that a crash is caught
and named by its signal; a valid case must succeed, a mutated one must succeed or raise a
clean error (InvalidArgumentError, ValueError, TypeError, ResourceExhaustedError).
FUSEDLAYERS_FUZZ_EXAMPLES sets the number of cases per test (default: a CI-sized run,
derandomized so CI is reproducible); a larger run draws fresh random cases each time.
"""

import copy
import os

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from fuzz_client import FuzzWorker, check_clean
from fusedlayers.activations import NAMES, NEEDS_PREACTIVATION

_EXAMPLES = os.environ.get("FUSEDLAYERS_FUZZ_EXAMPLES")
FUZZ_SETTINGS = settings(
    max_examples=int(_EXAMPLES or 60),
    derandomize=_EXAMPLES is None,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)

FLOATS = ["float32", "float64", "bfloat16", "float16"]
OTHER_DTYPES = ["int32", "int64", "bool", "complex64", "uint8"]
SMALL_DIMS = [0, 1, 2, 3, 5, 8]
# Huge dimensions only ever appear next to a zero one (nothing is allocated); products
# of two of them, or of one with an output dimension, overflow int64.
HUGE_DIMS = [2**31 - 1, 2**31, 2**32 + 1, 2**40, 2**62, 2**63 - 1]
MODES = ["eager", "function", "function_unknown_dims", "function_unknown_rank"]
BAD_ACTIVATIONS = ["mish", "", "RELU", "relu ", "gelu_erf", "linear\u00e9"]
BAD_SLOPES = [float("nan"), float("inf"), -float("inf"), -1e30, 1e30]


def tensor(shape, dtype):
    return {"shape": list(shape), "dtype": dtype}


def is_tensor(value):
    return isinstance(value, dict) and set(value) == {"shape", "dtype"}


def tensor_paths(args, prefix=()):
    """Paths (key and index tuples) to every tensor spec in a case's arguments."""
    if is_tensor(args):
        return [prefix]
    items = args.items() if isinstance(args, dict) else (
        enumerate(args) if isinstance(args, list) else ())
    return [p for k, v in items for p in tensor_paths(v, prefix + (k,))]


def lookup(args, path):
    for key in path:
        args = args[key]
    return args


def mutate_tensor(draw, spec):
    """Changes one aspect of one tensor: its rank, a dimension, a huge dimension or its dtype."""
    shape = spec["shape"]
    kind = draw(st.sampled_from(["rank", "dim", "huge", "dtype"]))
    if kind == "rank":
        if shape and draw(st.booleans()):
            del shape[draw(st.integers(0, len(shape) - 1))]
        else:
            shape.insert(draw(st.integers(0, len(shape))), draw(st.sampled_from(SMALL_DIMS)))
    elif kind == "dim" and shape:
        shape[draw(st.integers(0, len(shape) - 1))] = draw(st.sampled_from(SMALL_DIMS))
    elif kind == "huge" and len(shape) >= 2:
        i, j = draw(st.lists(st.integers(0, len(shape) - 1), min_size=2, max_size=2,
                             unique=True))
        shape[i] = draw(st.sampled_from(HUGE_DIMS))
        shape[j] = 0
    else:
        spec["dtype"] = draw(st.sampled_from(FLOATS + OTHER_DTYPES))


def element_count(spec):
    count = 1
    for d in spec["shape"]:
        count *= d
    return count


def mutate(draw, args, bad_values):
    """Applies one or two mutations: to a tensor, or an attribute set to a bad value."""
    args = copy.deepcopy(args)
    for _ in range(draw(st.integers(1, 2))):
        paths = tensor_paths(args)
        if bad_values and draw(st.booleans()):
            name = draw(st.sampled_from(sorted(bad_values)))
            args[name] = draw(st.sampled_from(bad_values[name]))
        elif paths:
            mutate_tensor(draw, lookup(args, draw(st.sampled_from(paths))))
    # The worker materializes inputs: a mutation that made one huge is discarded.
    assume(all(element_count(lookup(args, p)) <= 1 << 20 for p in tensor_paths(args)))
    return args


@st.composite
def dense_geometry(draw):
    """Valid dense sizes: leading dims, K, N (zeros allowed; optionally a huge empty K)."""
    batch = draw(st.lists(st.sampled_from(SMALL_DIMS), min_size=1, max_size=3))
    k, n = draw(st.sampled_from(SMALL_DIMS)), draw(st.sampled_from(SMALL_DIMS[1:]))
    if draw(st.integers(0, 9)) == 0:  # x [.., 0, .., huge] and kernel [huge, 0]: all empty
        batch[0], k, n = 0, draw(st.sampled_from(HUGE_DIMS)), 0
    return batch, k, n


activation_names = st.sampled_from(NAMES)
slopes = st.sampled_from([0.2, 0.0, -0.5, 3.0])


def dense_valid_args(target, batch, k, n, dtype, use_bias, activation, slope):
    x, kernel, y = tensor(batch + [k], dtype), tensor([k, n], dtype), tensor(batch + [n], dtype)
    bias = tensor([n], dtype) if use_bias else None
    if target == "fused_dense":
        return {"x": x, "kernel": kernel, "bias": bias, "activation": activation}
    if target == "fused_dense_tape":
        return {"x": x, "kernel": kernel, "bias": bias, "dy": y, "activation": activation}
    if target == "raw_dense":
        return {"x": x, "kernel": kernel, "bias": [bias] if use_bias else [],
                "activation": activation, "leaky_slope": slope}
    preactivation = y if activation in NEEDS_PREACTIVATION or slope < 0 else tensor([0], dtype)
    return {"dy": y, "x": x, "kernel": kernel, "y": y, "preactivation": preactivation,
            "num_bias": int(use_bias), "activation": activation, "leaky_slope": slope}


DENSE_BAD_VALUES = {
    "fused_dense": {"activation": BAD_ACTIVATIONS + [3]},
    "fused_dense_tape": {"activation": BAD_ACTIVATIONS},
    "raw_dense": {"activation": BAD_ACTIVATIONS, "leaky_slope": BAD_SLOPES},
    "raw_dense_grad": {"activation": BAD_ACTIVATIONS, "leaky_slope": BAD_SLOPES,
                       "num_bias": [2, 5, -1]},
}


@st.composite
def dense_op_cases(draw, target):
    batch, k, n = draw(dense_geometry())
    args = dense_valid_args(target, batch, k, n, draw(st.sampled_from(FLOATS)),
                            draw(st.booleans()), draw(activation_names), draw(slopes))
    mutated = draw(st.booleans())
    if mutated:
        args = mutate(draw, args, DENSE_BAD_VALUES[target])
        if target == "raw_dense" and draw(st.booleans()):
            args["bias"] = args["bias"] + [tensor([n], "float32")]
    case = {"target": target, "mode": draw(st.sampled_from(MODES)), "args": args,
            "seed": draw(st.integers(0, 2**16))}
    return case, not mutated


@st.composite
def dense_layer_cases(draw, target):
    batch = draw(st.lists(st.sampled_from(SMALL_DIMS), min_size=1, max_size=3))
    k, units = draw(st.sampled_from(SMALL_DIMS[1:])), draw(st.sampled_from(SMALL_DIMS[1:]))
    dtype = draw(st.sampled_from(FLOATS))
    ctor = {"units": units, "activation": draw(activation_names), "use_bias": draw(st.booleans()),
            "dtype": dtype}
    x = tensor(batch + [k], dtype)
    args = {"ctor": ctor, "inputs": [x, copy.deepcopy(x)]} if target == "dense_layer" else {
        "ctor": ctor, "x": x}
    mutated = draw(st.booleans())
    if mutated:
        bad_ctor = {"units": [0, -3, 2.5, "4", None, True], "activation": BAD_ACTIVATIONS,
                    "dtype": ["int32", "string", "mixed_float8"]}
        if draw(st.booleans()):
            name = draw(st.sampled_from(sorted(bad_ctor)))
            ctor[name] = draw(st.sampled_from(bad_ctor[name]))
        else:
            args = mutate(draw, args, {})
    mode = draw(st.sampled_from(MODES))
    # A layer builds from its input's last dimension: traced with it unknown, it must refuse.
    valid = not mutated and mode in ("eager", "function")
    return {"target": target, "mode": mode, "args": args, "seed": 0}, valid


@pytest.fixture(scope="module")
def worker():
    w = FuzzWorker()
    yield w
    w.close()


def run_and_check(worker, case, must_succeed):
    reply = worker.run(case)
    assume(reply["outcome"] != "unconstructible")
    check_clean(case, reply, must_succeed)


@pytest.mark.parametrize("target", ["fused_dense", "fused_dense_tape", "raw_dense",
                                    "raw_dense_grad"])
@FUZZ_SETTINGS
@given(data=st.data())
def test_dense_ops_never_crash(worker, target, data):
    case, valid = data.draw(dense_op_cases(target))
    run_and_check(worker, case, valid)


@pytest.mark.parametrize("target", ["dense_layer", "dense_layer_tape"])
@FUZZ_SETTINGS
@given(data=st.data())
def test_dense_layer_never_crashes(worker, target, data):
    case, valid = data.draw(dense_layer_cases(target))
    run_and_check(worker, case, valid)
