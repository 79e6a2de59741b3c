"""The run's files: results.json (everything), results.csv (one row per case), results.md (tables)."""

import csv
import dataclasses
import json
import math
import os

CSV_COLUMNS = (
    "id", "group", "layer", "workload", "batch", "dtype", "activation", "mode", "pass", "status",
    "message", "flops", "fused_s", "stock_s", "speedup", "speedup_q25", "speedup_q75",
    "fused_gflops", "stock_gflops", "fused_peak_fraction", "stock_peak_fraction", "pairs",
    "max_rel_error", "stock_max_rel_error",
)
MODE_NOTE = (
    "Modes: **eager** — both op by op; **function** — both in `tf.function`; **xla** — stock in "
    "`tf.function(jit_compile=True)` against fused in `tf.function` (the fused ops have no XLA "
    "kernel). Passes: **fwd**; **fwd+bwd** — forward and the gradients of input, kernel and "
    "bias; **train** — a whole Adam step of the seed auto-encoder."
)


def geomean(values):
    return math.exp(sum(math.log(v) for v in values) / len(values))


@dataclasses.dataclass(frozen=True)
class Target:
    """A performance target of issue 7 over the float32 cases that `selects`."""

    name: str
    selects: object  # result dict -> bool
    statistic: str  # "geomean" or "min"
    needed: float

    def evaluate(self, results):
        speedups = [r["speedup"] for r in results
                    if r["status"] == "ok" and r["dtype"] == "float32" and self.selects(r)]
        row = {"target": self.name, "needed": f"{self.statistic} ≥ {self.needed:g}×",
               "cases": len(speedups)}
        if not speedups:
            return {**row, "geomean": None, "min": None, "met": "not measured"}
        measured = {"geomean": geomean(speedups), "min": min(speedups)}
        return {**row, **measured, "met": "yes" if measured[self.statistic] >= self.needed
                else "no"}


def _is(**fields):
    """A predicate on result fields; `pass_` stands for the "pass" field."""
    return lambda r: all(r[k.rstrip("_")] == v for k, v in fields.items())


def _small_dense(r):
    """Small MLP shapes: at most 32 rows and a kernel of at most 1024×1024."""
    return r["batch"] <= 32 and r["flops"] <= 2 * r["batch"] * 1024 * 1024


TARGETS = (
    Target("Dense fwd, tf.function, every MLP shape",
           _is(group="mlp", mode="function", pass_="fwd"), "min", 1.0),
    Target("Dense fwd, tf.function, MLP shapes",
           _is(group="mlp", mode="function", pass_="fwd"), "geomean", 1.2),
    Target("Dense fwd+bwd, tf.function, MLP shapes",
           _is(group="mlp", mode="function", pass_="fwd+bwd"), "geomean", 1.5),
    Target("Dense fwd, eager, small MLP shapes (batch ≤ 32, K·N ≤ 1024²)",
           lambda r: _is(group="mlp", mode="eager", pass_="fwd")(r) and _small_dense(r),
           "min", 2.5),
    *(Target(f"{layer} {p}, tf.function", _is(layer=layer, mode="function", pass_=p),
             "geomean", 1.5)
      for layer in ("Conv2D", "Conv2DTranspose") for p in ("fwd", "fwd+bwd")),
    Target("Plain GEMM 1024×4096×4096 vs tf.matmul", _is(layer="GEMM"), "min", 0.95),
)


def summarize(results):
    """Geometric-mean speed-up per (group, layer, dtype, mode, pass) over the timed cases."""
    groups = {}
    for r in results:
        if r["status"] == "ok":
            key = (r["group"], r["layer"], r["dtype"], r["mode"], r["pass"])
            groups.setdefault(key, []).append(r["speedup"])
    return [
        {"group": g, "layer": layer, "dtype": dtype, "mode": mode, "pass": pass_,
         "cases": len(s), "geomean": geomean(s), "min": min(s), "max": max(s)}
        for (g, layer, dtype, mode, pass_), s in groups.items()
    ]


def write_json(path, header, peak, results):
    with open(path, "w") as f:
        json.dump({"machine": header, "peak": peak, "results": results,
                   "summary": summarize(results),
                   "targets": [t.evaluate(results) for t in TARGETS]}, f, indent=1)


def write_csv(path, results):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(results)


def _table(headers, rows):
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _x(value):
    return "—" if value is None else f"{value:.2f}×"


def _call_floor(floor):
    if not floor:
        return "not measured"
    return (f"{floor['function']:.3f} ms a `tf.function` call, {floor['eager']:.3f} ms an eager op "
            "(median, `x + 1` alone): paid per call by both sides, it bounds the speed-up of "
            "layers that compute less")


def header_lines(header, peak):
    info = header["build_info"]
    rows = [
        ("command", f"`{header['command']}`"),
        ("date", header["date_utc"]),
        ("CPU", header["cpu"]),
        ("fused kernels dispatched to",
         f"`{header['kernel_isa']}`, bfloat16: `{header.get('bf16_kernel')}`"),
        ("CPU features", ", ".join(k for k, v in info.get("cpu_features", {}).items() if v)),
        ("cores", f"{header['cores']} ({header['usable_cores']} usable, TF intra-op threads: "
                  f"{header['intra_op_threads']})"),
        ("TensorFlow / Keras / Python", f"{header['tensorflow']} / {header['keras']} / "
                                        f"{header['python']}"),
        ("oneDNN", header["onednn"]),
        ("fp32 peak", f"{peak['gflops']:.0f} GFLOP/s — {peak['method']}"),
        ("per-call floor", _call_floor(header.get("call_floor_ms"))),
        ("load average (1/5/15 min) at start", " / ".join(map(str, header["load_average_1_5_15"]))),
        ("fusedlayers build", f"{info.get('fusedlayers')}, {info.get('compiler')}, "
                              f"{info.get('build_type')}, TF {info.get('tensorflow_built_against')}"),
    ]
    if "load_average_end" in header:
        rows.append(("load average at end", " / ".join(map(str, header["load_average_end"]))))
    return _table(("", ""), rows)


def summary_markdown(results):
    """The issue 7 targets and the geometric-mean speed-ups, as markdown sections."""
    return "\n\n".join([
        "## Issue 7 targets (float32)",
        _table(("target", "cases", "geo-mean", "min", "needed", "met"),
               [(t["target"], t["cases"], _x(t["geomean"]), _x(t["min"]), t["needed"], t["met"])
                for t in (t.evaluate(results) for t in TARGETS)]),
        "## Summary: geometric-mean speed-up",
        _table(("group", "layer", "dtype", "mode", "pass", "cases", "geo-mean", "min", "max"),
               [(s["group"], s["layer"], s["dtype"], s["mode"], s["pass"], s["cases"],
                 _x(s["geomean"]), _x(s["min"]), _x(s["max"])) for s in summarize(results)]),
    ])


def markdown(header, peak, results):
    ok = [r for r in results if r["status"] == "ok"]
    parts = [
        "# fusedlayers benchmark: fused layers against stock Keras",
        header_lines(header, peak),
        "Speed-up = stock time ÷ fused time: the median over alternating pairs (fused and stock "
        "run back to back, order flipped every pair), with the interquartile range of the "
        "per-pair ratios in brackets; above 1× the fused layer is faster. Times are medians "
        "per call. GFLOP/s counts the matmul/convolution multiply-adds ×2 (×3 for fwd+bwd); "
        "% peak is each side's share of the fp32 peak above (bfloat16 cases too). Error is "
        "max|output − reference| ÷ max|reference| over all outputs; the reference is stock "
        "for float32 and stock computed in float32 from the same weights and inputs for "
        "bfloat16. " + MODE_NOTE,
        summary_markdown(results),
        "## Cases",
        _table(("group", "layer", "workload", "dtype", "act", "mode", "pass", "fused ms",
                "stock ms", "speed-up [IQR]", "fused GFLOP/s", "% peak fused / stock",
                "error fused / stock", "pairs"),
               [(r["group"], r["layer"], r["workload"], r["dtype"], r["activation"], r["mode"],
                 r["pass"], f"{r['fused_s'] * 1e3:.3f}", f"{r['stock_s'] * 1e3:.3f}",
                 f"**{r['speedup']:.2f}×** [{r['speedup_q25']:.2f}–{r['speedup_q75']:.2f}]",
                 f"{r['fused_gflops']:.1f}",
                 f"{100 * r['fused_peak_fraction']:.1f} / {100 * r['stock_peak_fraction']:.1f}",
                 f"{r['max_rel_error']:.0e} / {r['stock_max_rel_error']:.0e}",
                 r["pairs"]) for r in ok]),
    ]
    not_timed = [r for r in results if r["status"] != "ok"]
    if not_timed:
        parts += ["## Not timed",
                  _table(("case", "status", "why"),
                         [(f"`{r['id']}`", r["status"], r["message"]) for r in not_timed])]
    return "\n\n".join(parts) + "\n"


def write_markdown(path, header, peak, results):
    with open(path, "w") as f:
        f.write(markdown(header, peak, results))


def write_all(out_dir, header, peak, results):
    """Writes results.json, results.csv and results.md into out_dir; returns their paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = {name: os.path.join(out_dir, f"results.{name}") for name in ("json", "csv", "md")}
    write_json(paths["json"], header, peak, results)
    write_csv(paths["csv"], results)
    write_markdown(paths["md"], header, peak, results)
    return paths
