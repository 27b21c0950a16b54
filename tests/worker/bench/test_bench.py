"""`python -m worker.bench --quick` runs end to end and reports every performance figure (README).

The benchmark is not a timed test: nothing here checks a number against a target, only that each
measurement ran and produced its figure, and that the run cleaned up after itself. The quick run
takes a minute or more, so it is marked `bench` (and `integration`) and left out of the default
`pytest` / `make test`; `make test-bench` runs it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from worker.bench import plot, proc, redisstats, report, targets
from worker.bench.options import QUICK, Options, from_args, parser
from worker.bench.stats import percentile, summarize
from worker.bench.summaries import throughput

ROOT = Path(__file__).resolve().parents[3]

#: every target of the README's performance section, each shown beside bare Celery's figure
FIGURES = {
    "worker_cpu_per_text_b",
    "worker_cpu_per_text_a",
    "producer_cpu_per_send_b",
    "producer_cpu_per_send_a",
    "producer_redis_connections",
    "throughput_b",
    "throughput_a",
    "saturation_rate",
    "added_latency_p50",
    "added_latency_p99",
    "added_latency_p99_half_rate",
    "loop_lag_p99",
    "worker_rss",
    "redis_commands_per_text_b",
    "redis_commands_per_text_a",
    "redis_round_trips_per_text",
    "redis_script_calls_per_text",
    "redis_texts_per_s",
    "enqueue_p99",
    "enqueue_p99_at_rate",
}
#: figures the targets ask to be stated, not bounded
STATED = {"saturation_rate", "redis_round_trips_per_text", "redis_script_calls_per_text", "redis_texts_per_s"}
#: figures bare Celery has no counterpart for in its sync producer
NO_BARE = {"loop_lag_p99", "enqueue_p99_at_rate"}


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


def test_redis_commands_are_counted_per_text_without_the_orchestrators_own() -> None:
    """INFO and the sampler's own requests are left out; round trips are requests read."""
    before = redisstats.Counters(Counter({"lpush": 10, "info": 3}), reads=100, cpu=1.0)
    after = redisstats.Counters(
        Counter({"lpush": 30, "brpop": 20, "llen": 4, "info": 5}), reads=145, cpu=1.02
    )
    per = redisstats.per_text(before, after, 20, own_requests=4, own=Counter({"llen": 4}))
    assert per["total"] == 2.0
    assert per["by_command"] == {"lpush": 1.0, "brpop": 1.0}
    assert per["round_trips"] == 2.0  # 45 reads - the INFO of `after` - 4 samples
    assert per["redis_cpu_ms"] == 1.0
    assert redisstats.capacity(per) == 1000.0  # one core ÷ 1 ms of Redis CPU per text


def test_monitored_commands_are_charged_to_the_process_that_sent_them() -> None:
    """Known ports are the worker's, the monitor's own is dropped, any other port is the producer's."""
    lines = [
        ("100", "brpop"),
        ("100", "evalsha"),
        ("100", "hset"),
        ("7", "lpush"),
        ("8", "lpush"),
        ("9", "info"),
    ]
    per = redisstats.by_role(lines, {"100": "worker", "9": ""}, texts=2, other="producer")
    assert per == {
        "producer": {"total": 1.0, "by_command": {"lpush": 1.0}},
        "worker": {"total": 1.5, "by_command": {"brpop": 0.5, "evalsha": 0.5, "hset": 0.5}},
    }


def test_repeated_runs_give_each_figure_its_range() -> None:
    """`--repeat N`: the table adds min–max of ours, bare Celery's and the ratio over the runs."""

    def row(measured: float, bare: float | None) -> targets.Figure:
        return {
            "key": "k", "figure": "f", "target": "t", "measured": measured, "unit": "ms", "passed": True,
            "verdict": "met", "bare": bare, "ratio": None if bare is None else round(measured / bare, 2),
            "baselines": {},
        }  # fmt: skip

    rows = [row(2.0, 4.0)]
    targets.add_ranges(rows, [[row(3.0, 4.0)], [row(2.0, 5.0)], [row(2.5, None)]])
    assert rows[0]["range"] == {"measured": [2.0, 3.0], "bare": [4.0, 5.0], "ratio": [0.4, 0.75]}
    table = report.targets_table(rows)
    assert "2.00–3.00 ms" in table and "×0.40–0.75" in table
    assert from_args(parser().parse_args(["--repeat", "3"])).repeat == 3
    with pytest.raises(ValueError, match="--repeat"):
        from_args(parser().parse_args(["--repeat", "0"]))


def test_verdicts_say_how_far_a_target_is_missed() -> None:
    assert targets._at_most(1.2, 1.5, "ms") == (True, "met")
    assert targets._at_most(3.75, 1.5, "ms") == (False, "missed by 2.25 ms")
    assert targets._ratio_verdict(0.7, 0.8, True) == (True, "met")
    assert targets._ratio_verdict(1.1, 0.8, True) == (False, "missed by ×0.30")
    assert targets._ratio_verdict(0.9, 1.2, False) == (False, "missed by ×0.30")
    assert targets._ratio_verdict(None, 1.2, False) == (None, "not measured")


def test_profile_stages_are_the_deepest_frame_of_our_code() -> None:
    """A sample is charged to the deepest module of the repository in its stack, with the library
    below it; Celery's own loop, the benchmark's driver and the event loop get their own rows."""
    from worker.bench import profile

    claim = ["run (threading.py:1)", "deliver (worker/service.py:10)", "claim (worker/idempotency.py:5)",
             "execute (redis/client.py:3)", "read (socket.py:1)"]  # fmt: skip
    assert profile.classify(claim) == ("claim + outcome scripts (worker/idempotency.py)", "redis")
    loop = [
        "main (celery/bin/celery.py:1)",
        "consume (kombu/transport/redis.py:9)",
        "brpop (redis/client.py:1)",
    ]
    assert profile.classify(loop) == ("Celery/kombu loop, outside the task", "redis")
    driven = ["open_loop (worker/bench/load.py:1)", "run (asyncio/runners.py:1)", "select (selectors.py:1)"]
    assert profile.classify(driven) == ("asyncio event loop (outside a send's own code)", "selectors")
    raw = "a (worker/service.py:1);b (worker/events.py:2) 3\na (worker/service.py:1) 1\n"
    rows = profile.stages(profile.parse(raw), cpu_ms_per_text=2.0)
    assert [(r["stage"], r["share"], r["us_per_text"]) for r in rows] == [
        ("events (worker/events.py)", 0.75, 1500.0),
        ("orchestration (worker/service.py)", 0.25, 500.0),
    ]


def test_redis_connections_of_a_process_are_counted_from_proc() -> None:
    """The producer's connection count comes from its sockets in /proc: here, this process's."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        before = proc.redis_connections(os.getpid(), port)
        with socket.create_connection(("127.0.0.1", port)), socket.create_connection(("127.0.0.1", port)):
            assert proc.redis_connections(os.getpid(), port) == before + 2
    assert before == 0


def test_cpu_of_a_process_tree_includes_its_children() -> None:
    """A prefork worker's CPU is in its pool children: the tree's counters include them."""
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\nt=time.process_time()\nwhile time.process_time()-t<0.3: pass\ntime.sleep(30)",
        ]
    )
    try:
        start = time.monotonic()
        while proc.process_seconds(child.pid) < 0.25 and time.monotonic() - start < 10.0:
            time.sleep(0.05)
        assert proc.tree_seconds(os.getpid()) >= proc.process_seconds(os.getpid()) + 0.25
    finally:
        child.kill()
        child.wait()


def _measured(results: dict[str, Any]) -> dict[str, Any]:
    return {row["key"]: row for row in results["figures"]}


@pytest.mark.bench
@pytest.mark.integration
@pytest.mark.timeout(300)
def test_quick_run_reports_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    run = subprocess.run(
        [sys.executable, "-m", "worker.bench", "--quick", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=280,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = json.loads((out / "bench.json").read_text())

    figures = _measured(results)
    assert set(figures) == FIGURES
    for key, row in figures.items():
        assert isinstance(row["measured"], int | float), key
        assert row["figure"] in run.stdout, key
        if key in STATED:
            assert (row["passed"], row["verdict"]) == (None, "stated"), key
        else:
            assert row["passed"] in (True, False), key
            assert row["verdict"] == "met" or row["verdict"].startswith("missed by"), key
        if key not in NO_BARE:
            assert isinstance(row["bare"], int | float), key
    # CPU per text of each process, in both set-ups, ours and bare Celery's
    for side in ("ours", "bare"):
        for run_ in (results[side]["saturation"], results[side]["setup_a"]):
            assert run_["completed"] > 0
            cpu = run_["cpu"]
            assert cpu["workers_ms_per_msg"] > 0 and cpu["producers_ms_per_msg"] > 0
            assert {"redis-server", "fake-slow", "worker-" + side + "-0", "bench-producer-0"} <= set(
                cpu["per_process"]
            )
            # Redis commands per text with the breakdown, and round trips
            assert run_["redis"]["total"] > 0 and run_["redis"]["round_trips"] > 0
            assert run_["redis"]["by_command"]["lpush"] >= 0.9  # one job pushed per text
            assert run_["occupancy"]["producer_connections"]["max"] >= 1
        assert results[side]["setup_a"]["workers"] == 1 and results[side]["setup_a"]["producers"] == 1
        assert results[side]["half_rate"]["latency"]["n"] > 0
    # every script call's inner commands count: our claim runs inside EVALSHA
    assert results["ours"]["saturation"]["redis"]["by_command"]["evalsha"] >= 1
    # each baseline ran and is set next to the figures it compares with
    assert results["floor"]["round_trip"]["n"] == QUICK.serial
    assert results["bare"]["serial"]["round_trip"]["n"] == QUICK.serial
    assert results["direct"]["fast"]["n"] == QUICK.serial
    assert results["bare"]["saturation"]["msg_per_s"] > 0
    assert figures["added_latency_p50"]["baselines"].keys() == {"floor", "direct"}
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
    assert serial["redis_commands_per_message"]["by_command"]["lpush"] >= 1
    # the table, the JSON and the PNG; the README's table again from the JSON with --markdown
    assert "| figure" in run.stdout and "verdict" in run.stdout
    assert report.targets_table(results["figures"]).splitlines()[0] in run.stdout
    again = subprocess.run(
        [sys.executable, "-m", "worker.bench", "--markdown", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert report.targets_table(results["figures"]) in again.stdout
    assert (out / "performance.md").read_text().strip() == again.stdout.strip()
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
    # (a seed text that did not make it on a crowded machine is left out and counted, not fatal)
    assert receipts["messages"] + sum(receipts["seeds_not_accepted"].values()) == QUICK.receipts_messages
    assert receipts["at_load"]["latency"]["n"] == receipts["messages"] >= 0.9 * QUICK.receipts_messages
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


@pytest.mark.bench
@pytest.mark.integration
@pytest.mark.timeout(300)
def test_profile_reports_the_stages_of_ours_and_bare_celery(tmp_path: Path) -> None:
    """`--profile` samples one worker and one producer of each pipeline and charges the samples to
    stages (py-spy; when it cannot attach, each block says why and the CPU is still there)."""
    out = tmp_path / "profile"
    run = subprocess.run(
        [sys.executable, "-m", "worker.bench", "--profile", "--duration", "3", "--profile-rate", "30",
         "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=280,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads((out / "profile.json").read_text())["profile"]
    assert not (out / "bench.json").exists()  # a full run's JSON is never overwritten by a profile
    for side in ("ours", "bare"):
        for role in ("worker", "producer"):
            block = result[side][role]
            assert block["cpu_ms_per_text"] is not None, (side, role)
            if "error" in block:
                print(f"{side} {role}: {block['error']}")
                continue
            assert block["samples"] > 0 and block["stages"], (side, role)
            assert abs(sum(row["share"] for row in block["stages"]) - 1) < 0.01
    assert "Where one send's CPU goes" in run.stdout
