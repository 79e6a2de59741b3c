"""Alternating timer: fused and stock measured in turn (A B, B A, ...) so drift hits both alike."""

import dataclasses
import gc
import time

import numpy as np


@dataclasses.dataclass(frozen=True)
class Budget:
    """How long to time one case: at least `min_pairs` pairs and `seconds`, at most `max_pairs`."""

    seconds: float
    min_pairs: int
    max_pairs: int
    warmup: int = 2
    sample_seconds: float = 0.005  # calls are batched until one sample lasts about this long


@dataclasses.dataclass(frozen=True)
class Timings:
    fused: np.ndarray  # seconds per call, one entry per pair
    stock: np.ndarray

    @property
    def ratios(self):
        """Per-pair speed-ups stock/fused: each pair ran back to back under the same load."""
        return self.stock / self.fused

    def summary(self):
        q25, q50, q75 = np.percentile(self.ratios, [25, 50, 75])
        return {
            "fused_s": float(np.median(self.fused)),
            "stock_s": float(np.median(self.stock)),
            "speedup": float(q50),
            "speedup_q25": float(q25),
            "speedup_q75": float(q75),
            "pairs": int(len(self.fused)),
        }


def seconds_per_call(fn, args, calls):
    """The mean time of `calls` back-to-back calls of fn(*args)."""
    start = time.perf_counter()
    for _ in range(calls):
        fn(*args)
    return (time.perf_counter() - start) / calls


def time_alternating(fused, stock, args, budget):
    """Times fused(*args) and stock(*args) alternately after a warm-up; returns Timings.

    The order flips every pair, so neither side always runs on the caches and clock
    state the other left behind. Garbage collection is paused while timing.
    """
    for _ in range(budget.warmup):
        fused(*args)
        stock(*args)
    fastest = min(seconds_per_call(fused, args, 1), seconds_per_call(stock, args, 1))
    calls = max(1, int(budget.sample_seconds / max(fastest, 1e-9)))
    sides = (fused, stock)
    samples = ([], [])
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        pairs = 0
        while pairs < budget.max_pairs and (
                pairs < budget.min_pairs or time.perf_counter() - start < budget.seconds):
            for side in ((0, 1) if pairs % 2 == 0 else (1, 0)):
                samples[side].append(seconds_per_call(sides[side], args, calls))
            pairs += 1
    finally:
        gc.enable()
    return Timings(np.array(samples[0]), np.array(samples[1]))
