"""The benchmark's command: run, print the table, write bench.json, performance.md and latency.png;
`--markdown` prints the README's table from a finished run's bench.json without running anything.

Exit status: 0 the run completed (whatever the figures: the benchmark is not a test), 1 it could
not run (a process did not start or answer; its log is in `<out>/logs`), 2 bad options, 130
interrupted. Every process it started is stopped in all cases.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from worker.bench import options as bench_options
from worker.bench import plot, report, runner, targets
from worker.bench import profile as profiling
from worker.bench.processes import BenchError


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def print_markdown(out: Path) -> int:
    """`--markdown`: the README's table from the JSON of a finished full run."""
    path = out / "bench.json"
    try:
        results = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        print(f"error: no readable {path} ({exc}); run `make bench` first", file=sys.stderr)
        return 2
    if not results.get("figures"):
        print(f"error: {path} is not from a full run (no figures)", file=sys.stderr)
        return 2
    print(report.markdown(results))
    return 0


def run_args(args: argparse.Namespace) -> int:
    if getattr(args, "markdown", False):
        return print_markdown(args.out)
    try:
        options = bench_options.from_args(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        runs = []
        for i in range(options.repeat):
            if options.repeat > 1:
                print(f"[bench] run {i + 1} of {options.repeat}", file=sys.stderr, flush=True)
            runs.append(runner.run(options))
        results = runs[-1]
        if len(runs) > 1 and "ours" in results:
            results["repeats"] = [
                {"figures": report.figures(r), "wall_seconds": r["meta"].get("wall_seconds")} for r in runs
            ]
    except (BenchError, OSError, RuntimeError) as exc:  # a process did not start, answer or finish
        kind = "" if isinstance(exc, BenchError) else f"{type(exc).__name__}: "
        print(f"error: {kind}{exc}\n(logs of every process: {options.out / 'logs'})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: every process the benchmark started has been stopped", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    finish(results, options.out)
    return 0


def finish_profile(results: dict[str, Any], out: Path) -> None:
    """`--profile`: profile.json (bench.json of a full run is left alone) and the stage tables."""
    path = report.write_json(results, out / "profile.json")
    print(report.summary_line(results))
    print(profiling.render(results["profile"]))
    print(f"\nwrote {path} (raw py-spy stacks in {out / 'profile'})")


def finish(results: dict[str, Any], out: Path) -> None:
    """Add the figures, write the JSON and the PNG, print the table."""
    if "profile" in results:
        finish_profile(results, out)
        return
    results["figures"] = report.figures(results) if "ours" in results else []
    if results.get("repeats"):
        targets.add_ranges(results["figures"], [run["figures"] for run in results["repeats"]])
    png, why_not = None, "matplotlib is not installed (pip install matplotlib)"
    if "ours" not in results:
        why_not = f"only the {results['meta']['only']} phase ran"
    elif plot.available():
        try:
            png = plot.latency_png(results, out / "latency.png")
        except Exception as exc:  # the figures matter more than the picture
            why_not = f"drawing failed: {type(exc).__name__}: {exc}"
    results["meta"]["png"] = None if png is None else str(png)
    path = report.write_json(results, out / "bench.json")
    print(report.render(results))
    print(f"\nwrote {path}")
    if results["figures"]:
        table = out / "performance.md"
        table.write_text(report.markdown(results) + "\n")
        print(f"wrote {table} (the README's table; again: midcall-sms bench --markdown)")
    print(f"wrote {png}" if png else f"no PNG: {why_not}; the JSON has every figure")


def main(argv: Sequence[str] | None = None) -> int:
    return run_args(bench_options.parser().parse_args(argv))
