"""fusedlayers-bench: times the fused layers against stock Keras and writes tables and a chart."""

import argparse
import os
import sys

from fusedlayers.bench import cases as case_grid
from fusedlayers.bench import machine, report
from fusedlayers.bench.runner import run_case
from fusedlayers.bench.timing import Budget

QUICK_BUDGET = Budget(seconds=0.6, min_pairs=7, max_pairs=200)
FULL_BUDGET = Budget(seconds=2.0, min_pairs=15, max_pairs=1000)
CHART_NAME = "speedup.png"


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="fusedlayers-bench",
        description="Times fusedlayers' fused layers against stock Keras layers with the same "
                    "weights, alternately in one process, after checking they compute the same.")
    parser.add_argument("--quick", action="store_true",
                        help="a small grid that ends in a few minutes on two cores "
                             "(default: the full grid)")
    parser.add_argument("--out", metavar="DIR",
                        help="write results.json, results.csv, results.md and "
                             f"{CHART_NAME} into DIR")
    parser.add_argument("--filter", metavar="PATTERN", action="append", default=[],
                        help="run only cases whose id contains PATTERN or matches it as a "
                             "regular expression (repeatable: any one matches)")
    parser.add_argument("--list", action="store_true", help="print the selected case ids and exit")
    parser.add_argument("--seconds", type=float, metavar="S",
                        help="timing budget per case (default: "
                             f"{QUICK_BUDGET.seconds} quick, {FULL_BUDGET.seconds} full)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.seconds is not None and args.seconds < 0:
        parser.error(f"--seconds must be >= 0, got {args.seconds}")
    return args


def _progress(items, enabled):
    if not enabled:
        return items
    try:
        from tqdm import tqdm
    except ImportError:
        return items
    return tqdm(items, unit="case", dynamic_ncols=True)


def _chart_available():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _outcome(result):
    if result["status"] != "ok":
        return f"{result['status']}: {result['message']}"
    return (f"{result['speedup']:.2f}× [{result['speedup_q25']:.2f}–{result['speedup_q75']:.2f}] "
            f"fused {result['fused_s'] * 1e3:.3f} ms, stock {result['stock_s'] * 1e3:.3f} ms")


def main(argv=None):
    """Runs the selected cases; returns 0, or 1 when any case's fused and stock outputs differ."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    selected = case_grid.select(
        case_grid.quick_grid() if args.quick else case_grid.full_grid(), args.filter)
    if args.list:
        print("\n".join(c.id for c in selected))
        return 0
    if not selected:
        print(f"no case matches {args.filter}; see the ids with --list", file=sys.stderr)
        return 2
    if args.out and not _chart_available():
        print("fusedlayers-bench: the chart needs matplotlib; install the extras with "
              "`pip install 'fusedlayers[bench]'`", file=sys.stderr)
        return 2
    budget = QUICK_BUDGET if args.quick else FULL_BUDGET
    if args.seconds is not None:
        budget = Budget(args.seconds, min(budget.min_pairs, 3), budget.max_pairs)

    header = machine.describe(argv)
    header["call_floor_ms"] = machine.measure_call_floor()
    peak = machine.measure_peak()
    print(report.header_lines(header, peak))
    print(f"\n{len(selected)} cases\n")
    results = []
    show_bar = not args.no_progress and sys.stderr.isatty()
    progress = _progress(selected, enabled=show_bar)
    for index, case in enumerate(progress, 1):
        if hasattr(progress, "set_description_str"):
            progress.set_description_str(case.id)
        result = run_case(case, budget, peak["gflops"])
        results.append(result)
        line = _outcome(result)
        if hasattr(progress, "write"):
            if result["status"] != "ok":
                progress.write(f"{case.id}: {line}")
        else:
            print(f"[{index}/{len(selected)}] {case.id}: {line}", flush=True)
    header["load_average_end"] = [round(x, 2) for x in os.getloadavg()]

    print("\n" + report.summary_markdown(results) + "\n")
    if args.out:
        paths = report.write_all(args.out, header, peak, results)
        from fusedlayers.bench.chart import write_chart

        paths["png"] = write_chart(os.path.join(args.out, CHART_NAME), results,
                                   f"fusedlayers vs stock Keras — {header['cpu']}, "
                                   f"{header['usable_cores']} cores, {header['date_utc']}")
        print("wrote " + ", ".join(paths.values()))
    return 1 if any(r["status"] == "failed" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
