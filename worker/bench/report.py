"""Performance figures (README) from a run's results: each with its target, pass or miss, baselines.

A baseline cell shows the baseline's own figure and how ours compares:
- floor (raw Redis job-and-reply round trip) and bare Celery (a no-op task with `.get()`): their
  round trip is their whole overhead, so the ratio is our *added* latency ÷ their round trip;
- direct call (the provider request from the producer, no queue): the ratio is our *total*
  latency ÷ the direct call's, i.e. how much slower texting through the pipeline is end to end;
- enqueue: ours ÷ the floor's single `LPUSH` and ÷ Celery's `send_task`;
- throughput and memory: ours ÷ the bare Celery workers' under the same load.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypedDict

from worker.bench import receipts


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
    baselines: dict[str, Cell]


BASELINES = {"floor": "floor (raw Redis)", "bare": "bare Celery", "direct": "direct call"}


def _cell(value: float | None, ours: float | None, note: str = "") -> Cell:
    ratio = round(ours / value, 2) if ours is not None and value else None
    return {"value": value, "ratio": ratio, "note": note}


def _check(measured: float | None, limit: float, at_most: bool) -> bool | None:
    if measured is None:
        return None
    return measured <= limit if at_most else measured >= limit


def figures(results: dict[str, Any]) -> list[Figure]:
    floor, direct, bare, ours = results["floor"], results["direct"], results["bare"], results["ours"]
    serial, headline, sat = ours["serial"], ours["headline"], ours["saturation"]
    rate = headline["rate"]
    rows: list[Figure] = []

    def add(
        key: str, figure: str, target: str, measured: float | None, unit: str, passed: bool | None,
        **cells: Cell,
    ) -> None:  # fmt: skip
        rows.append({
            "key": key, "figure": figure, "target": target, "measured": measured, "unit": unit,
            "passed": passed, "baselines": cells,
        })  # fmt: skip

    for q, limit in (("p50", 1.5), ("p99", 4.0)):
        added = serial["added"][q]
        add(
            f"added_latency_{q}", f"added latency {q}, one at a time (provider 0 ms)", f"≤ {limit:g} ms",
            added, "ms", _check(added, limit, True),
            floor=_cell(floor["round_trip"][q], added, "round trip"),
            bare=_cell(bare["serial"]["round_trip"][q], added, "no-op .get()"),
            direct=_cell(direct["fast"][q], serial["latency"][q], "total ÷ direct"),
        )  # fmt: skip
    added = headline["added"]["p99"]
    add(
        "added_latency_p99_at_rate", f"added latency p99 at {rate} msg/s offered (provider 0 ms)", "≤ 10 ms",
        added, "ms", _check(added, 10.0, True),
        direct=_cell(direct["fast"]["p99"], headline["latency"]["p99"], "total ÷ direct"),
    )  # fmt: skip
    ratio = (
        round(sat["msg_per_s"] / bare["saturation"]["msg_per_s"], 3)
        if bare["saturation"]["msg_per_s"]
        else None
    )
    provider = results["meta"]["provider_latency_ms"]
    add(
        "throughput_vs_bare", f"saturation throughput, provider {provider:g} ms (ours ÷ bare Celery)",
        "≥ 0.90", ratio, "×", _check(ratio, 0.9, False),
        bare=_cell(bare["saturation"]["msg_per_s"], sat["msg_per_s"], "msg/s"),
    )  # fmt: skip
    add(
        "throughput", f"saturation throughput, provider {provider:g} ms", "toward 1,000 msg/s",
        sat["msg_per_s"], "msg/s", _check(sat["msg_per_s"], 1000.0, False),
        bare=_cell(bare["saturation"]["msg_per_s"], sat["msg_per_s"], "msg/s"),
    )  # fmt: skip
    for key, label, block in (
        ("enqueue_p99_at_rate", f"enqueue p99 at {rate} msg/s", headline),
        ("enqueue_p99", "enqueue p99, one at a time", serial),
    ):
        value = block["enqueue"]["p99"]
        add(
            key, label, "≤ 1 ms", value, "ms", _check(value, 1.0, True),
            floor=_cell(floor["push"]["p99"], value, "LPUSH, one at a time"),
            bare=_cell(bare["serial"]["send"]["p99"], value, "send_task, one at a time"),
        )  # fmt: skip
    lag = headline["lag"]["p99"]
    add(
        "loop_lag_p99", f"producer event-loop lag p99 at {rate} msg/s", "≤ 2 ms", lag, "ms",
        _check(lag, 2.0, True),
    )  # fmt: skip
    rss = max((m["rss_mb"] for m in ours["memory"] if m["rss_mb"] is not None), default=None)
    bare_rss = max((m["rss_mb"] for m in bare["memory"] if m["rss_mb"] is not None), default=None)
    add(
        "worker_rss", f"worker RSS per process, concurrency {results['meta']['concurrency']}", "≤ 150 MB",
        rss, "MB", _check(rss, 150.0, True), bare=_cell(bare_rss, rss, "after its saturation run"),
    )  # fmt: skip
    return rows


# -- printing ---------------------------------------------------------------------------------------


def _num(value: float | None, unit: str = "") -> str:
    if value is None:
        return "—"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}"
    return f"{text} {unit}".rstrip()


def _baseline(cell: Cell | None, unit: str) -> str:
    if cell is None:
        return "—"
    unit = "" if unit == "×" else ("msg/s" if cell["note"] == "msg/s" else unit)
    ratio = f" (×{cell['ratio']:.2f})" if cell["ratio"] is not None else ""
    return f"{_num(cell['value'], unit)}{ratio}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def targets_table(rows: list[Figure]) -> str:
    header = ["figure", "target", "measured", "pass", *BASELINES.values()]
    body = []
    for row in rows:
        passed = "—" if row["passed"] is None else ("pass" if row["passed"] else "MISS")
        cells = [_baseline(row["baselines"].get(key), row["unit"]) for key in BASELINES]
        body.append([row["figure"], row["target"], _num(row["measured"], row["unit"]), passed, *cells])
    return _table(header, body)


def _pq(summary: dict[str, Any], *qs: str) -> list[str]:
    return [_num(summary.get(q)) for q in qs]


def _view(block: dict[str, Any]) -> float | None:
    """The mean provider request time our workers saw during a phase (from their /metrics)."""
    view: dict[str, Any] = block.get("worker_view") or {}
    value: float | None = view.get("provider_request_mean_ms")
    return value


def _baselines(results: dict[str, Any]) -> str:
    floor, direct, bare = results["floor"], results["direct"], results["bare"]
    provider = results["meta"]["provider_latency_ms"]
    rows = [
        ("floor: raw Redis LPUSH → BRPOP → LPUSH → BLPOP", floor["round_trip"]),
        ("bare Celery: no-op task, .get()", bare["serial"]["round_trip"]),
        ("direct provider call, fake at 0 ms", direct["fast"]),
        (f"direct provider call, fake at {provider:g} ms", direct["slow"]),
    ]
    return "Baselines (ms, one at a time unless said)\n" + _table(
        ["baseline", "n", "p50", "p90", "p99", "max"],
        [[name, str(s["n"]), *_pq(s, "p50", "p90", "p99", "max")] for name, s in rows],
    )


def _stages(serial: dict[str, Any], direct: dict[str, Any]) -> str:
    rows = [[stage, *_pq(s, "p50", "p90", "p99")] for stage, s in serial.get("stages", {}).items()]
    rows.append(["total (send() call → result)", *_pq(serial["latency"], "p50", "p90", "p99")])
    return (
        "Where one send's time goes, one at a time at 0 ms (ms, from its events' timestamps)\n"
        + _table(["stage", "p50", "p90", "p99"], rows)
        + f"\nThe provider request inside the worker (Twilio SDK, /metrics) took {_num(_view(serial))} ms "
        f"on average; the same request made directly with httpx: p50 {_num(direct['fast']['p50'])} ms."
    )


def _sweep(results: dict[str, Any]) -> str:
    provider = results["meta"]["provider_latency_ms"]
    header = ["offered msg/s", "completed msg/s", "added p50", "added p90", "added p99", "enqueue p99",
              "provider in worker", "not accepted"]  # fmt: skip
    rows = [
        [str(p["offered_msg_per_s"]), _num(p["completed_msg_per_s"]), *_pq(p["added"], "p50", "p90", "p99"),
         _num(p["enqueue"]["p99"]), _num(_view(p)),
         str(sum(n for s, n in p["statuses"].items() if s != "accepted"))]
        for p in results["ours"]["sweep"]
    ]  # fmt: skip
    return (
        f"Latency against offered load (provider {provider:g} ms; added = total − its p50; "
        f"'provider in worker' = mean provider request seen by the workers; ms)\n" + _table(header, rows)
    )


def _occupancy(sat: dict[str, Any]) -> str:
    occupancy = sat.get("occupancy", {})
    parts = [
        f"{key} {occupancy[key]['mean']:g} (max {occupancy[key]['max']:g})"
        for key in ("waiting", "unacked", "executing")
        if key in occupancy
    ]
    return ", ".join(parts) or "not sampled"


def _load(results: dict[str, Any]) -> str:
    provider = results["meta"]["provider_latency_ms"]
    headline, sat, bare = (
        results["ours"]["headline"],
        results["ours"]["saturation"],
        results["bare"]["saturation"],
    )
    return (
        f"At {headline['rate']} msg/s: achieved {_num(headline['achieved_msg_per_s'])} msg/s, "
        f"dispatch late p99 {_num(headline['late']['p99'])} ms, idle loop lag p99 "
        f"{_num(headline['idle_lag']['p99'])} ms, statuses {headline['statuses']}.\n"
        f"Saturation ({provider:g} ms provider, {sat['in_flight']} in flight): "
        f"ours {_num(sat['msg_per_s'])} msg/s "
        f"(latency p50 {_num(sat['latency']['p50'])} ms, p99 {_num(sat['latency']['p99'])} ms, "
        f"{sat['failures']} not accepted; provider request in the workers {_num(_view(sat))} ms mean; "
        f"messages {_occupancy(sat)}); bare Celery {_num(bare['msg_per_s'])} msg/s "
        f"({bare['failures']} failed; messages {_occupancy(bare)})."
    )


def _cpu(results: dict[str, Any]) -> str:
    provider = results["meta"]["provider_latency_ms"]
    ours, bare = results["ours"], results["bare"]
    rows = [
        ("ours, one at a time (0 ms)", ours["serial"].get("cpu")),
        (f"ours, {ours['headline']['rate']} msg/s (0 ms)", ours["headline"].get("cpu")),
        *((f"ours, sweep {p['offered_msg_per_s']} msg/s", p.get("cpu")) for p in ours["sweep"]),
        (f"ours, saturation ({provider:g} ms)", ours["saturation"].get("cpu")),
        (f"bare Celery, saturation ({provider:g} ms)", bare["saturation"].get("cpu")),
    ]
    commands = "; ".join(
        f"{name} {_commands(block['redis_commands_per_message'])}"
        for name, block in (
            ("floor", results["floor"]),
            ("bare Celery", bare["serial"]),
            ("ours", ours["serial"]),
        )
    )
    return (
        "CPU per message (ms of CPU time, from /proc) and cores busy, ours and others on the machine\n"
        + _cpu_table(rows)
        + f"\nRedis commands per message, one at a time (INFO commandstats): {commands}."
    )


def details(results: dict[str, Any]) -> str:
    ours, bare = results["ours"], results["bare"]
    memory = ", ".join(f"{m['worker']} {_num(m['rss_mb'])} MB" for m in ours["memory"] + bare["memory"])
    return "\n\n".join([
        _baselines(results),
        _stages(ours["serial"], results["direct"]),
        _sweep(results),
        _load(results),
        _cpu(results),
        f"RSS after saturation: {memory}.",
    ])  # fmt: skip


_CPU_GROUPS = ("workers", "producers", "redis", "fakes", "orchestrator")


def _cpu_table(rows: list[tuple[str, dict[str, Any] | None]]) -> str:
    header = ["phase", *_CPU_GROUPS, "our cores", "other cores"]
    body = [
        [label, *(_num(usage.get(f"{g}_ms_per_msg")) for g in _CPU_GROUPS),
         _num(usage.get("ours_cores")), _num(usage.get("other_cores"))]
        for label, usage in rows
        if usage
    ]  # fmt: skip
    return _table(header, body)


def _commands(per: dict[str, float]) -> str:
    top = ", ".join(f"{cmd} {n:g}" for cmd, n in per.items() if cmd != "total" and n >= 0.5)
    return f"{per.get('total', 0):g} ({top})"


def summary_line(results: dict[str, Any]) -> str:
    m = results["meta"]
    tuning = " ".join([*m.get("worker_env", []), *m.get("worker_args", [])])
    return (
        f"midcall-sms benchmark{' (--quick: smoke counts, not figures)' if m['quick'] else ''}: "
        f"{m['workers']} worker(s) × {m['concurrency']} threads{f' [{tuning}]' if tuning else ''}, "
        f"{m['producers']} producer processes, {m['cpus']} CPUs, Redis {m['redis_version']} "
        f"(appendonly {'yes' if m['redis_appendonly'] else 'no'}), Python {m['python']}, "
        f"Celery {m['versions'].get('celery', '?')}, {m.get('wall_seconds', '?')} s"
    )


def render(results: dict[str, Any]) -> str:
    parts = [summary_line(results)]
    if "ours" in results:
        parts += ["", targets_table(results["figures"]), "", details(results)]
    if "receipts" in results:
        parts += ["", receipts.render(results["receipts"])]
    return "\n".join(parts)


def write_json(results: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    return path
