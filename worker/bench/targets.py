"""The performance targets (README, Performance) from a run's results: each figure beside bare Celery's.

Every row has our figure, bare Celery's same figure measured in the same run, the ratio ours ÷
bare, and a verdict against the target: `met`, `missed by …` (how far, in the target's own terms:
ms, MB, or the ratio), or `stated` for a figure the targets ask to be stated, not bounded.

The two set-ups (docs/benchmark.md): **(b)** `--workers` worker processes driven from
`--producers` separate producer processes; **(a)** one worker process driven from one producer
process. Figures measured under load come from the saturation runs with the provider at
`--provider-latency-ms`; CPU per text is each process's own CPU time over the phase ÷ texts completed.
The floor and direct-call cells stay beside the latency rows as before.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

from worker.bench import redisstats

#: the targets of the README's performance section
WORKER_CPU_RATIO = 0.8
PRODUCER_CPU_MS = 0.5
PRODUCER_CONNECTIONS = 10
THROUGHPUT_RATIO = 1.2
ADDED_P50_MS, ADDED_P99_MS = 1.5, 4.0
HALF_RATE_P99_MS = 10.0
LOOP_LAG_MS = 2.0
RSS_MB = 150.0
REDIS_COMMANDS_RATIO = 1.0
ENQUEUE_P99_MS = 1.0


class Cell(TypedDict):
    value: float | None
    ratio: float | None
    note: str


class Figure(TypedDict):
    key: str
    figure: str
    target: str
    measured: float | None
    unit: str
    passed: bool | None
    verdict: str
    #: bare Celery's same figure in the same run, and ours ÷ it
    bare: float | None
    ratio: float | None
    baselines: dict[str, Cell]
    #: with `--repeat N`: [min, max] of `measured`, `bare` and `ratio` over the N runs
    range: NotRequired[dict[str, list[float] | None]]


def _ratio(ours: float | None, base: float | None) -> float | None:
    return round(ours / base, 2) if ours is not None and base else None


def _cell(value: float | None, ours: float | None, note: str = "") -> Cell:
    return {"value": value, "ratio": _ratio(ours, value), "note": note}


def _num(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}"


def _at_most(measured: float | None, limit: float, unit: str) -> tuple[bool | None, str]:
    if measured is None:
        return None, "not measured"
    if measured <= limit:
        return True, "met"
    return False, f"missed by {_num(measured - limit)} {unit}".rstrip()


def _ratio_verdict(ratio: float | None, limit: float, at_most: bool) -> tuple[bool | None, str]:
    if ratio is None:
        return None, "not measured"
    if (ratio <= limit) if at_most else (ratio >= limit):
        return True, "met"
    return False, f"missed by ×{abs(ratio - limit):.2f}"


def _max(rows: list[dict[str, Any]], key: str) -> float | None:
    return max((r[key] for r in rows if r.get(key) is not None), default=None)


def _scripts(per: dict[str, Any]) -> float:
    by = per.get("by_command", {})
    return round(float(by.get("evalsha", 0.0)) + float(by.get("eval", 0.0)), 2)


def _connections(sat: dict[str, Any]) -> float | None:
    value = sat.get("occupancy", {}).get("producer_connections", {}).get("max")
    return None if value is None else float(value)


class _Rows:
    def __init__(self) -> None:
        self.rows: list[Figure] = []

    def add(
        self, key: str, figure: str, target: str, measured: float | None, unit: str,
        verdict: tuple[bool | None, str], bare: float | None = None, **cells: Cell,
    ) -> None:  # fmt: skip
        self.rows.append({
            "key": key, "figure": figure, "target": target, "measured": measured, "unit": unit,
            "passed": verdict[0], "verdict": verdict[1], "bare": bare, "ratio": _ratio(measured, bare),
            "baselines": cells,
        })  # fmt: skip


def setups(results: dict[str, Any]) -> list[tuple[str, str, dict[str, Any], dict[str, Any]]]:
    """(key suffix, label, ours, bare Celery) of each set-up's saturation run."""
    meta, ours, bare = results["meta"], results["ours"], results["bare"]
    return [
        (
            "b",
            f"(b) {meta['workers']} worker(s), {meta['producers']} producer processes",
            ours["saturation"],
            bare["saturation"],
        ),
        ("a", "(a) 1 worker, 1 producer process", ours["setup_a"], bare["setup_a"]),
    ]


def figures(results: dict[str, Any]) -> list[Figure]:
    floor, direct, bare, ours = results["floor"], results["direct"], results["bare"], results["ours"]
    serial, headline = ours["serial"], ours["headline"]
    provider = results["meta"]["provider_latency_ms"]
    out = _Rows()
    runs = setups(results)
    for suffix, label, sat, base in runs:
        mine, theirs = sat["cpu"].get("workers_ms_per_msg"), base["cpu"].get("workers_ms_per_msg")
        out.add(
            f"worker_cpu_per_text_{suffix}", f"worker CPU per text, {label}",
            f"≤ {WORKER_CPU_RATIO:g}× bare Celery", mine, "ms",
            _ratio_verdict(_ratio(mine, theirs), WORKER_CPU_RATIO, True), theirs,
        )  # fmt: skip
    for suffix, label, sat, base in runs:
        mine, theirs = sat["cpu"].get("producers_ms_per_msg"), base["cpu"].get("producers_ms_per_msg")
        out.add(
            f"producer_cpu_per_send_{suffix}", f"producer CPU per send, {label}", f"≤ {PRODUCER_CPU_MS:g} ms",
            mine, "ms", _at_most(mine, PRODUCER_CPU_MS, "ms"), theirs,
        )  # fmt: skip
    sat_b, base_b = runs[0][2], runs[0][3]
    mine = _connections(sat_b)
    out.add(
        "producer_redis_connections",
        f"Redis connections per producer process, {sat_b['in_flight'] // max(sat_b['producers'], 1)} "
        "sends waiting (max)",
        f"a handful (≤ {PRODUCER_CONNECTIONS})", mine, "", _at_most(mine, PRODUCER_CONNECTIONS, ""),
        _connections(base_b),
    )  # fmt: skip
    for suffix, label, sat, base in runs:
        out.add(
            f"throughput_{suffix}", f"throughput, provider {provider:g} ms, {label}",
            f"≥ {THROUGHPUT_RATIO:g}× bare Celery", sat["msg_per_s"], "msg/s",
            _ratio_verdict(_ratio(sat["msg_per_s"], base["msg_per_s"]), THROUGHPUT_RATIO, False),
            base["msg_per_s"],
        )  # fmt: skip
    busy = sat_b["cpu"].get("ours_cores")
    out.add(
        "saturation_rate",
        f"rate at which this machine's {results['meta']['cpus']} cores saturate, {runs[0][1]}"
        + (f" ({busy:g} cores busy)" if busy is not None else ""),
        "stated", sat_b["msg_per_s"], "msg/s", (None, "stated"), base_b["msg_per_s"],
    )  # fmt: skip
    for q, limit in (("p50", ADDED_P50_MS), ("p99", ADDED_P99_MS)):
        added = serial["added"][q]
        theirs = bare["serial"]["round_trip"][q]
        out.add(
            f"added_latency_{q}", f"added latency {q}, one at a time (provider 0 ms)", f"≤ {limit:g} ms",
            added, "ms", _at_most(added, limit, "ms"), theirs,
            floor=_cell(floor["round_trip"][q], added, "round trip"),
            direct=_cell(direct["fast"][q], serial["latency"][q], "total ÷ direct"),
        )  # fmt: skip
    half, bare_half = ours["half_rate"], bare["half_rate"]
    added = half["added"]["p99"]
    out.add(
        "added_latency_p99_half_rate",
        f"added latency p99 at half the saturation rate ({half['offered_msg_per_s']} msg/s; bare Celery "
        f"{bare_half['offered_msg_per_s']} msg/s; provider 0 ms)",
        f"≤ {HALF_RATE_P99_MS:g} ms", added, "ms", _at_most(added, HALF_RATE_P99_MS, "ms"),
        bare_half["added"]["p99"],
    )  # fmt: skip
    lag = headline["lag"]["p99"]
    out.add(
        "loop_lag_p99", f"producer event-loop lag p99 at {headline['rate']} msg/s", f"≤ {LOOP_LAG_MS:g} ms",
        lag, "ms", _at_most(lag, LOOP_LAG_MS, "ms"),
    )  # fmt: skip
    rss, bare_rss = _max(ours["memory"], "rss_mb"), _max(bare["memory"], "rss_mb")
    out.add(
        "worker_rss", f"worker RSS per process, concurrency {results['meta']['concurrency']}",
        f"≤ {RSS_MB:g} MB", rss, "MB", _at_most(rss, RSS_MB, "MB"), bare_rss,
    )  # fmt: skip
    for suffix, label, sat, base in runs:
        mine, theirs = sat["redis"]["total"], base["redis"]["total"]
        out.add(
            f"redis_commands_per_text_{suffix}", f"Redis commands per text, every feature on, {label}",
            "≤ bare Celery's", mine, "", _ratio_verdict(_ratio(mine, theirs), REDIS_COMMANDS_RATIO, True),
            theirs,
        )  # fmt: skip
    out.add(
        "redis_round_trips_per_text", f"Redis round trips per text (requests read), {runs[0][1]}", "stated",
        sat_b["redis"]["round_trips"], "", (None, "stated"), base_b["redis"]["round_trips"],
    )  # fmt: skip
    out.add(
        "redis_script_calls_per_text",
        f"Redis script calls per text (enqueue + claim with every policy), {runs[0][1]}",
        "stated", _scripts(sat_b["redis"]), "", (None, "stated"), _scripts(base_b["redis"]),
    )  # fmt: skip
    mine, theirs = redisstats.capacity(sat_b["redis"]), redisstats.capacity(base_b["redis"])
    out.add(
        "redis_texts_per_s", "texts per second one Redis instance can carry (1 core ÷ Redis CPU per text)",
        "stated", mine, "texts/s", (None, "stated"), theirs,
    )  # fmt: skip
    for key, label, block in (
        ("enqueue_p99", "enqueue p99, one at a time", serial),
        ("enqueue_p99_at_rate", f"enqueue p99 at {headline['rate']} msg/s", headline),
    ):
        value = block["enqueue"]["p99"]
        out.add(
            key, label, f"≤ {ENQUEUE_P99_MS:g} ms", value, "ms", _at_most(value, ENQUEUE_P99_MS, "ms"),
            bare["serial"]["send"]["p99"] if block is serial else None,
            floor=_cell(floor["push"]["p99"], value, "LPUSH, one at a time"),
        )  # fmt: skip
    return out.rows


def add_ranges(rows: list[Figure], runs: list[list[Figure]]) -> None:
    """Each row's [min, max] over the runs (`--repeat`), for ours, bare Celery and the ratio."""
    by_key: list[dict[str, dict[str, Any]]] = [{r["key"]: dict(r) for r in run} for run in runs]
    for row in rows:
        spans: dict[str, list[float] | None] = {}
        for field in ("measured", "bare", "ratio"):
            found = [run[row["key"]].get(field) for run in by_key if row["key"] in run]
            values = [float(v) for v in found if v is not None]
            spans[field] = [min(values), max(values)] if values else None
        row["range"] = spans
