"""The benchmark cases: workload × batch × dtype × activation × mode × pass, quick and full grids."""

import dataclasses
import itertools
import re

from fusedlayers.activations import NAMES as ACTIVATIONS
from fusedlayers.bench import autoencoder
from fusedlayers.bench.workloads import GemmSpec, LayerSpec

# eager: both run op by op; function: both in tf.function; xla: stock in
# tf.function(jit_compile=True) against fused in tf.function (our ops have no XLA kernel).
MODES = ("eager", "function", "xla")
PASSES = ("fwd", "fwd+bwd", "train")
DTYPES = ("float32", "bfloat16")


@dataclasses.dataclass(frozen=True)
class Case:
    group: str  # the workload family: mlp, activations, keras-dropin, seed-ae, enc64, dcgan, ...
    spec: object  # LayerSpec, GemmSpec or AutoEncoderSpec
    batch: int
    dtype: str
    activation: str
    mode: str
    pass_: str

    @property
    def layer(self):
        return self.spec.kind

    @property
    def workload(self):
        return f"b{self.batch} {self.spec.label()}"

    @property
    def id(self):
        shape = re.sub(r"\s+", "-", self.workload).replace("→", "-").replace("×", "x")
        return "/".join((self.spec.layer, self.group, shape, self.activation, self.dtype, self.mode,
                         self.pass_))

    def flops(self):
        per_forward = self.spec.flops_forward(self.batch)
        return per_forward if self.pass_ == "fwd" else 3 * per_forward

    def contest(self, rng):
        return self.spec.contest(self.pass_, self.batch, self.dtype, self.activation, rng)


def _grid(group, specs, batches, dtypes, activations, modes, passes):
    return [
        Case(group, spec, batch, dtype, act, mode, pass_)
        for spec, batch, dtype, act, mode, pass_ in itertools.product(
            specs, batches, dtypes, activations, modes, passes)
    ]


def _dense(k, n, api="fl"):
    return LayerSpec.make("Dense", (k,), api=api, units=n)


def _transpose(input_shape, filters):
    return LayerSpec.make("Conv2DTranspose", input_shape, filters=filters, kernel_size=4,
                          strides=2, padding="same")


# DCGAN's generator: 8×8×256 → 16×16×128 → 32×32×64 → 64×64×3, k4 s2 'same'.
DCGAN = (
    (_transpose((8, 8, 256), 128), "relu"),
    (_transpose((16, 16, 128), 64), "relu"),
    (_transpose((32, 32, 64), 3), "tanh"),
)
# The 64×64×3 encoder of the post's full VAE example: Conv2D(32|64|128|256, 4, 2).
ENC64 = tuple(
    (LayerSpec.make("Conv2D", shape, filters=f, kernel_size=4, strides=2, padding="valid"), "elu")
    for shape, f in (((64, 64, 3), 32), ((31, 31, 32), 64), ((14, 14, 64), 128),
                     ((6, 6, 128), 256))
)
SEED_AE = tuple((spec, act) for _, spec, act in autoencoder.LAYERS if spec.kind != "Dense")


def _conv_cases(group, layers, batch, dtypes, modes, passes):
    return [case for spec, act in layers
            for case in _grid(group, [spec], [batch], dtypes, [act], modes, passes)]


def _mlp_shapes(batches, kns, max_flops):
    return [(b, _dense(k, n)) for b in batches for k, n in kns if 2 * b * k * n <= max_flops]


def full_grid():
    """Every workload in every dtype, mode and pass it makes sense in."""
    cases = []
    kns = [(100, 100), (784, 256), (1024, 1024), (4096, 4096)]
    for batch, spec in _mlp_shapes([1, 32, 256, 4096], kns, max_flops=2 ** 36):
        cases += _grid("mlp", [spec], [batch], DTYPES, ["relu"], MODES, ("fwd", "fwd+bwd"))
    cases += _grid("activations", [_dense(1024, 1024)], [256], ["float32"], ACTIVATIONS,
                   ["function"], ("fwd", "fwd+bwd"))
    cases += _grid("keras-dropin", [_dense(256, 256, "keras"), _dense(1024, 1024, "keras")],
                   [1, 32, 256], ["float32"], ["relu"], MODES, ("fwd", "fwd+bwd"))
    cases += _conv_cases("seed-ae", SEED_AE, 32, DTYPES, MODES, ("fwd", "fwd+bwd"))
    cases += _conv_cases("enc64", ENC64, 32, DTYPES, MODES, ("fwd", "fwd+bwd"))
    cases += _conv_cases("dcgan", DCGAN, 32, DTYPES, MODES, ("fwd", "fwd+bwd"))
    cases += _grid("gemm", [GemmSpec(4096, 4096)], [1024], ["float32"], ["linear"], ["function"],
                   ["fwd"])
    cases += _grid("train", [autoencoder.AutoEncoderSpec()], [64], DTYPES, ["elu"], MODES,
                   ["train"])
    return cases


def quick_grid():
    """A few minutes on two cores: one or two shapes per workload family, mostly tf.function."""
    cases = []
    for batch, spec in ((1, _dense(256, 256)), (32, _dense(1024, 1024)),
                        (256, _dense(1024, 1024))):
        cases += _grid("mlp", [spec], [batch], ["float32"], ["relu"], MODES, ("fwd", "fwd+bwd"))
    cases += _grid("mlp", [_dense(1024, 1024)], [32], ["bfloat16"], ["relu"], ["function"],
                   ("fwd", "fwd+bwd"))
    cases += _grid("activations", [_dense(512, 512)], [32], ["float32"], ACTIVATIONS,
                   ["function"], ["fwd+bwd"])
    cases += _grid("keras-dropin", [_dense(1024, 1024, "keras")], [32], ["float32"], ["relu"],
                   ("eager", "function"), ("fwd", "fwd+bwd"))
    cases += _conv_cases("seed-ae", SEED_AE, 32, ["float32"], ["function"], ("fwd", "fwd+bwd"))
    cases += _conv_cases("dcgan", DCGAN, 16, ["float32"], ["function", "xla"],
                         ("fwd", "fwd+bwd"))
    cases += _grid("train", [autoencoder.AutoEncoderSpec()], [64], ["float32"], ["elu"],
                   ("function", "xla"), ["train"])
    return cases


def _matcher(pattern):
    try:
        regex = re.compile(pattern)
    except re.error:
        return lambda text: pattern in text
    return lambda text: pattern in text or regex.search(text) is not None


def select(cases, patterns):
    """The cases whose id contains, or matches as a regular expression, any of `patterns`."""
    if not patterns:
        return list(cases)
    matchers = [_matcher(p) for p in patterns]
    return [c for c in cases if any(m(c.id) for m in matchers)]
