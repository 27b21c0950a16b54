"""Turning the producers' raw samples into the figures of bench.json (pure functions, no I/O)."""

from __future__ import annotations

import contextlib
from collections import Counter, defaultdict
from typing import Any

from worker.bench.stats import summarize


def latency_block(out: dict[str, Any], provider_ms: float) -> dict[str, Any]:
    """Latency, added latency (latency minus the provider's own p50), enqueue, stages, statuses."""
    block: dict[str, Any] = {
        "latency": summarize(out["latency"]),
        "added": summarize([x - provider_ms for x in out["latency"]]),
        "enqueue": summarize(out["enqueue"]),
        "statuses": out["statuses"],
    }
    if any(out["stages"].values()):
        block["stages"] = {stage: summarize(samples) for stage, samples in out["stages"].items()}
    return block


def sweep_point(rate: int, outs: list[dict[str, Any]], provider_ms: float) -> dict[str, Any]:
    """One offered load of the sweep, over all producers."""
    latency = [x for out in outs for x in out["latency"]]
    statuses: Counter[str] = Counter()
    for out in outs:
        statuses.update(out["statuses"])
    began = min(out["began"] for out in outs)
    finished = max(out["finished"] for out in outs)
    return {
        "offered_msg_per_s": rate,
        "sent": sum(out["sent"] for out in outs),
        "completed_msg_per_s": round(len(latency) / max(finished - began, 1e-9), 1),
        "latency": summarize(latency),
        "added": summarize([x - provider_ms for x in latency]),
        "enqueue": summarize([x for out in outs for x in out["enqueue"]]),
        "statuses": dict(statuses),
    }


def throughput(outs: list[dict[str, Any]], count_from: float, stop: float, in_flight: int) -> dict[str, Any]:
    """Messages completed per second inside the window [count_from, stop], over all producers."""
    done = [t for out in outs for t in out["completed"] if count_from <= t <= stop]
    return {
        "msg_per_s": round(len(done) / (stop - count_from), 1),
        "completed_in_window": len(done),
        "completed": sum(len(out["completed"]) for out in outs),
        "window_s": round(stop - count_from, 3),
        "failures": sum(int(out.get("failures", 0)) for out in outs),
        "in_flight": in_flight * len(outs),
    }


_METRICS = {
    "midcall_sms_provider_request_seconds": "provider_request",
    "midcall_sms_end_to_end_seconds": "end_to_end",
}


def metric_totals(texts: list[str]) -> dict[str, float]:
    """Our workers' /metrics summed over the workers: `_sum`/`_count` of the histograms we read and
    the `midcall_sms_in_flight` gauge."""
    totals: defaultdict[str, float] = defaultdict(float)
    for text in texts:
        for line in text.splitlines():
            name, _, value = line.rpartition(" ")
            wanted = [m + suffix for m in _METRICS for suffix in ("_sum", "_count")] + [
                "midcall_sms_in_flight"
            ]
            for key in wanted:
                if name == key or name.startswith(key + "{"):
                    with contextlib.suppress(ValueError):
                        totals[key] += float(value)
    return dict(totals)


def worker_metrics(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    """Mean provider request and created_at → terminal event time between two `metric_totals`."""
    out: dict[str, Any] = {}
    for metric, label in _METRICS.items():
        count = after.get(metric + "_count", 0.0) - before.get(metric + "_count", 0.0)
        total = after.get(metric + "_sum", 0.0) - before.get(metric + "_sum", 0.0)
        out[f"{label}_count"] = int(count)
        out[f"{label}_mean_ms"] = round(total / count * 1000, 3) if count else None
    return out


def occupancy(samples: list[dict[str, float]]) -> dict[str, Any]:
    """Mean and max of each sampled gauge (queued, unacked, executing) over a phase."""
    out: dict[str, Any] = {"samples": len(samples)}
    for key in sorted({k for sample in samples for k in sample}):
        values = [sample[key] for sample in samples if key in sample]
        out[key] = {"mean": round(sum(values) / len(values), 1), "max": max(values)}
    return out
