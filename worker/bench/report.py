"""The benchmark's table, its diagnostics and the JSON, from a run's results.

The figures themselves (each target beside bare Celery's figure, the ratio and the verdict) come
from `targets`. Baseline cells for the latency rows:
- floor (raw Redis job-and-reply round trip): the ratio is our *added* latency ÷ its round trip;
- direct call (the provider request from the producer, no queue): the ratio is our *total*
  latency ÷ the direct call's, i.e. how much slower texting through the pipeline is end to end.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from worker.bench import receipts, redisstats
from worker.bench.targets import Cell, Figure, figures, setups

__all__ = ["Cell", "Figure", "figures", "markdown", "render", "targets_table", "write_json"]

BASELINES = {"floor": "floor (raw Redis)", "direct": "direct call"}


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


def _ratio(value: float | None) -> str:
    return "—" if value is None else f"×{value:.2f}"


def targets_table(rows: list[Figure]) -> str:
    """Each target: ours, bare Celery's in the same run, ours ÷ bare, the verdict, then the floor
    and the direct call (with ours ÷ them) where they apply. A Markdown table."""
    ranged = any("range" in row for row in rows)
    header = ["figure", "target", "ours", "bare Celery", "ours ÷ bare", "verdict", *BASELINES.values()]
    if ranged:
        header += ["ours, range of the runs", "bare Celery, range", "ours ÷ bare, range"]
    body = []
    for row in rows:
        unit = row["unit"]
        cells = [_baseline(row["baselines"].get(key), unit) for key in BASELINES]
        line = [
            row["figure"], row["target"], _num(row["measured"], unit), _num(row["bare"], unit),
            _ratio(row["ratio"]), row["verdict"], *cells,
        ]  # fmt: skip
        if ranged:
            spans = row.get("range", {})
            line += [
                _span(spans.get("measured"), unit),
                _span(spans.get("bare"), unit),
                _span(spans.get("ratio"), "×"),
            ]
        body.append(line)
    return _table(header, body)


def _span(span: list[float] | None, unit: str) -> str:
    if not span:
        return "—"
    if unit == "×":
        return f"×{span[0]:.2f}–{span[1]:.2f}"
    return f"{_num(span[0])}–{_num(span[1], unit)}"


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


def _saturations(results: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    provider = results["meta"]["provider_latency_ms"]
    out = []
    for _, label, ours, bare in setups(results):
        out += [(f"ours, saturation {provider:g} ms, {label}", ours)]
        out += [(f"bare Celery, saturation {provider:g} ms, {label}", bare)]
    return out


def _cpu(results: dict[str, Any]) -> str:
    ours, bare = results["ours"], results["bare"]
    rows = [
        ("ours, one at a time (0 ms)", ours["serial"].get("cpu")),
        (f"ours, {ours['headline']['rate']} msg/s (0 ms)", ours["headline"].get("cpu")),
        *((f"ours, sweep {p['offered_msg_per_s']} msg/s", p.get("cpu")) for p in ours["sweep"]),
        *((label, block.get("cpu")) for label, block in _saturations(results)),
        (f"ours, half rate {ours['half_rate']['offered_msg_per_s']} msg/s (0 ms)",
         ours["half_rate"].get("cpu")),
        (f"bare Celery, half rate {bare['half_rate']['offered_msg_per_s']} msg/s (0 ms)",
         bare["half_rate"].get("cpu")),
    ]  # fmt: skip
    return (
        "CPU per text by process group (ms of CPU time from each process's /proc/<pid>/stat, children "
        "included, over the phase ÷ texts completed) and cores busy, ours and others on the machine\n"
        + _cpu_table(rows)
    )


def _redis(results: dict[str, Any]) -> str:
    """Redis per text: commands, round trips, Redis CPU, the capacity that gives, the top commands."""
    rows = [
        ("floor, one at a time", results["floor"]["redis_commands_per_message"]),
        ("bare Celery no-op, one at a time", results["bare"]["serial"]["redis_commands_per_message"]),
        ("ours, one at a time (0 ms)", results["ours"]["serial"]["redis_commands_per_message"]),
        *((label, block.get("redis")) for label, block in _saturations(results)),
    ]
    body = [
        [label, _num(per["total"]), _num(per["round_trips"]), _num(per["redis_cpu_ms"]),
         _num(redisstats.capacity(per)), _commands(per["by_command"])]
        for label, per in rows
        if per
    ]  # fmt: skip
    return (
        "Redis per text (INFO commandstats: commands inside Lua scripts and MULTI/EXEC count one by one; "
        "round trips = requests read, INFO stats total_reads_processed; Redis CPU = used_cpu_user+sys; "
        "one Redis = 1 core ÷ that)\n"
        + _table(
            ["phase", "commands", "round trips", "Redis CPU ms", "texts/s one Redis", "top commands"], body
        )
    )


def details(results: dict[str, Any]) -> str:
    ours, bare = results["ours"], results["bare"]
    memory = ", ".join(
        f"{m['worker']} {_num(m['rss_mb'])} MB"
        for m in ours["memory"] + bare["memory"] + ours["setup_a"]["memory"] + bare["setup_a"]["memory"]
    )
    return "\n\n".join([
        _baselines(results),
        _stages(ours["serial"], results["direct"]),
        _sweep(results),
        _load(results),
        _cpu(results),
        _redis(results),
        f"RSS after saturation (b, then a): {memory}.",
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


def _commands(by_command: dict[str, float], top: int = 6) -> str:
    return ", ".join(f"{cmd} {n:g}" for cmd, n in list(by_command.items())[:top])


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


def markdown(results: dict[str, Any]) -> str:
    """The README's performance table (and the Redis and CPU breakdowns) from one run's results."""
    parts = [
        f"<!-- from {results['meta'].get('started_at', '?')}: {summary_line(results)} -->",
        targets_table(results["figures"]),
        "",
        _redis(results),
        "",
        _cpu(results),
    ]
    return "\n".join(parts)


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
