"""fusedlayers-bench end to end on one tiny case, and the runner's check-before-timing rule."""

import csv
import dataclasses
import json

import tensorflow as tf

from fusedlayers.bench import cases, cli, runner
from fusedlayers.bench.timing import Budget
from fusedlayers.bench.workloads import Contest, Unavailable

TINY_CASE = "dense/mlp/b1-256-256/relu/float32/function/fwd"
TINY_BUDGET = Budget(seconds=0.0, min_pairs=3, max_pairs=3, warmup=1)


def test_cli_writes_json_csv_markdown_and_png(tmp_path):
    out = tmp_path / "results"
    assert cli.main(["--quick", "--filter", f"^{TINY_CASE}$", "--seconds", "0", "--no-progress",
                     "--out", str(out)]) == 0

    data = json.loads((out / "results.json").read_text())
    assert {"machine", "peak", "results", "summary", "targets"} <= set(data)
    assert {"cpu", "kernel_isa", "cores", "tensorflow", "onednn", "build_info"} <= set(
        data["machine"])
    assert data["peak"]["gflops"] > 0
    floor = data["machine"]["call_floor_ms"]
    assert floor["function"] > 0 and floor["eager"] > 0
    assert "per-call floor" in (out / "results.md").read_text()
    [result] = data["results"]
    assert result["id"] == TINY_CASE and result["status"] == "ok", result
    assert result["pairs"] >= 3
    for key in ("fused_s", "stock_s", "speedup", "speedup_q25", "speedup_q75", "fused_gflops",
                "fused_peak_fraction"):
        assert result[key] > 0, key
    assert result["speedup_q25"] <= result["speedup"] <= result["speedup_q75"]

    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["id"] for r in rows] == [TINY_CASE]
    assert float(rows[0]["speedup"]) == result["speedup"]

    md = (out / "results.md").read_text()
    assert "| group | layer | workload |" in md
    assert "| mlp | Dense | b1 256→256 | float32 | relu | function | fwd |" in md
    assert (out / "speedup.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_list_prints_the_selected_ids(capsys):
    assert cli.main(["--quick", "--list", "--filter", "fwd+bwd", "--filter", "dcgan"]) == 0
    ids = capsys.readouterr().out.split()
    assert ids and all("fwd+bwd" in i or "dcgan" in i for i in ids)
    assert set(ids) == {c.id for c in cases.select(cases.quick_grid(), ["fwd+bwd", "dcgan"])}


def test_every_case_id_is_unique():
    ids = [c.id for c in cases.full_grid()]
    assert len(ids) == len(set(ids))


@dataclasses.dataclass(frozen=True)
class FakeSpec:
    """y = 2x, with fused (and stock) off by an offset, or missing; float32 reference if 16-bit."""

    fused_offset: float
    missing: bool = False
    stock_offset: float = 0.0
    kind = "Fake"
    layer = "fake"

    def label(self):
        return "8→8"

    def flops_forward(self, batch):
        return 2 * batch * 8 * 8

    def contest(self, pass_, batch, dtype, activation, rng):
        if self.missing:
            raise Unavailable("fl.Fake is not in this build of fusedlayers")
        x = tf.cast(tf.linspace(-1.0, 1.0, batch * 8), dtype)
        contest = Contest(lambda x: x * 2 + self.fused_offset, lambda x: x * 2 + self.stock_offset,
                          (x,))
        if dtype != "float32":
            contest.reference, contest.reference_args = (lambda x: x * 2), (tf.cast(x, tf.float32),)
        return contest


def _fake_case(spec, dtype="float32"):
    return cases.Case("fake", spec, 4, dtype, "linear", "function", "fwd")


def test_mismatching_outputs_fail_the_case_without_timing():
    result = runner.run_case(_fake_case(FakeSpec(fused_offset=0.01)), TINY_BUDGET, 100.0)
    assert result["status"] == "failed"
    assert "outputs differ" in result["message"]
    assert "speedup" not in result and "fused_s" not in result


def test_matching_outputs_are_timed():
    result = runner.run_case(_fake_case(FakeSpec(fused_offset=0.0)), TINY_BUDGET, 100.0)
    assert result["status"] == "ok", result
    assert result["max_rel_error"] == 0.0
    assert result["pairs"] == 3


def test_missing_fused_op_skips_the_case():
    result = runner.run_case(_fake_case(FakeSpec(0.0, missing=True)), TINY_BUDGET, 100.0)
    assert result["status"] == "skipped"
    assert "not in this build" in result["message"]


def test_bfloat16_is_checked_against_the_float32_reference_not_stock():
    off_stock = FakeSpec(fused_offset=0.0, stock_offset=0.5)
    result = runner.run_case(_fake_case(off_stock, "bfloat16"), TINY_BUDGET, 100.0)
    assert result["status"] == "ok", result
    assert result["max_rel_error"] < 1e-2 < result["stock_max_rel_error"]
    off_fused = FakeSpec(fused_offset=0.5)
    result = runner.run_case(_fake_case(off_fused, "bfloat16"), TINY_BUDGET, 100.0)
    assert result["status"] == "failed" and "outputs differ" in result["message"]
