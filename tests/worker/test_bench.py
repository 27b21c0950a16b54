"""`python -m worker.bench --quick` runs end to end and reports every performance figure (README).

The benchmark is not a timed test: nothing here checks a number against a target, only that each
measurement ran and produced its figure, and that the run cleaned up after itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from worker.bench import plot, report
from worker.bench.options import QUICK, Options, from_args, parser
from worker.bench.stats import percentile, summarize
from worker.bench.summaries import per_message, throughput

ROOT = Path(__file__).resolve().parents[2]

FIGURES = {
    "added_latency_p50",
    "added_latency_p99",
    "added_latency_p99_at_rate",
    "throughput_vs_bare",
    "throughput",
    "enqueue_p99_at_rate",
    "enqueue_p99",
    "loop_lag_p99",
    "worker_rss",
}


def test_percentiles_use_the_nearest_rank() -> None:
    samples = [float(x) for x in range(1, 101)]
    assert percentile(samples, 50) == 50.0
    assert percentile(samples, 99) == 99.0
    assert percentile([3.0], 99) == 3.0
    assert percentile([], 50) is None
    assert summarize([])["p99"] is None
    assert summarize([1.0, 2.0])["max"] == 2.0


def test_quick_mode_is_small_and_options_are_checked() -> None:
    quick = from_args(parser().parse_args(["--quick"]))
    assert quick == QUICK
    assert quick.serial < Options().serial and quick.duration < Options().duration
    assert from_args(parser().parse_args(["--rates", "10,20", "--workers", "3"])).rates == (10, 20)
    with pytest.raises(ValueError, match="--workers"):
        from_args(parser().parse_args(["--workers", "0"]))
    with pytest.raises(SystemExit):
        parser().parse_args(["--rates", "fast"])
    only = from_args(parser().parse_args(["--only", "receipts", "--receipts-rate", "300"]))
    assert (only.only, only.receipts_rate, only.receipts_messages) == (
        "receipts",
        300,
        Options.receipts_messages,
    )
    with pytest.raises(SystemExit):
        parser().parse_args(["--only", "floor"])


def test_throughput_counts_only_completions_inside_the_window() -> None:
    outs: list[dict[str, Any]] = [
        {"completed": [0.5, 1.0, 1.5, 2.0, 3.5], "failures": 1},
        {"completed": [1.2, 2.9]},
    ]
    result = throughput(outs, count_from=1.0, stop=3.0, in_flight=10)
    assert result["completed_in_window"] == 5
    assert result["msg_per_s"] == 2.5
    assert result["completed"] == 7
    assert result["failures"] == 1
    assert result["in_flight"] == 20


def test_redis_commands_are_counted_per_message_without_info() -> None:
    before = Counter({"lpush": 10, "info": 3})
    after = Counter({"lpush": 30, "brpop": 20, "info": 5})
    assert per_message(before, after, 20) == {"total": 2.0, "lpush": 1.0, "brpop": 1.0}


def _measured(results: dict[str, Any]) -> dict[str, Any]:
    return {row["key"]: row for row in results["figures"]}


@pytest.mark.integration
@pytest.mark.timeout(240)
def test_quick_run_reports_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    run = subprocess.run(
        [sys.executable, "-m", "worker.bench", "--quick", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=200,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = json.loads((out / "bench.json").read_text())

    figures = _measured(results)
    assert set(figures) == FIGURES
    for key, row in figures.items():
        assert isinstance(row["measured"], int | float), key
        assert row["passed"] in (True, False), key
        assert row["figure"] in run.stdout, key
    # each baseline ran and is set next to the figures it compares with
    assert results["floor"]["round_trip"]["n"] == QUICK.serial
    assert results["bare"]["serial"]["round_trip"]["n"] == QUICK.serial
    assert results["direct"]["fast"]["n"] == QUICK.serial
    assert results["bare"]["saturation"]["msg_per_s"] > 0
    assert figures["added_latency_p50"]["baselines"].keys() == {"floor", "bare", "direct"}
    assert figures["throughput_vs_bare"]["baselines"]["bare"]["value"] > 0
    # our pipeline: every send of the one-at-a-time run was accepted, with its stages timed
    serial = results["ours"]["serial"]
    assert serial["statuses"] == {"accepted": QUICK.serial}
    assert set(serial["stages"]) == {"call→sending", "sending→accepted", "accepted→result"}
    assert results["ours"]["headline"]["lag"]["n"] > 0
    assert [p["offered_msg_per_s"] for p in results["ours"]["sweep"]] == list(QUICK.rates)
    assert all(p["latency"]["n"] > 0 for p in results["ours"]["sweep"])
    assert all(m["rss_mb"] > 0 for m in results["ours"]["memory"])
    # the diagnostics the tuning reads: CPU per message, Redis commands, what the workers saw
    saturation = results["ours"]["saturation"]
    assert saturation["cpu"]["workers_ms_per_msg"] > 0
    assert saturation["occupancy"]["samples"] > 0 and "executing" in saturation["occupancy"]
    assert saturation["worker_view"]["provider_request_count"] > 0
    assert serial["redis_commands_per_message"]["lpush"] >= 1
    # the table, the JSON and the PNG
    assert "| figure" in run.stdout and "pass" in run.stdout
    assert report.targets_table(results["figures"]).splitlines()[0] in run.stdout
    png = out / "latency.png"
    if plot.available():
        assert results["meta"]["png"] == str(png)
        assert png.read_bytes().startswith(b"\x89PNG")
    else:
        assert results["meta"]["png"] is None
        assert "matplotlib is not installed" in run.stdout
    # the HTTP service's receipts: every signed receipt answered and published, none lost
    receipts = results["receipts"]
    assert receipts["lost"] == {"sent": 0, "delivered": 0}
    assert receipts["saturation"]["receipts_per_s"] > 0
    assert receipts["at_load"]["latency"]["n"] == receipts["messages"] == QUICK.receipts_messages
    assert "Receipts through the HTTP service" in run.stdout and "receipts/s sustained" in run.stdout
    # nothing left running: redis, the fakes, the workers, the service and the producers were all stopped
    started = results["meta"]["processes"]
    assert {
        "redis-server", "fake-fast", "fake-slow", "worker-raw", "worker-ours-0", "worker-bare-0",
        "http-service",
    } <= set(started)  # fmt: skip
    assert [name for name, pid in started.items() if _alive(pid)] == []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
