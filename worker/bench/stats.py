"""Percentiles of latency samples, in milliseconds."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypedDict


class Summary(TypedDict):
    n: int
    p50: float | None
    p90: float | None
    p99: float | None
    max: float | None
    mean: float | None


def percentile(samples: Sequence[float], q: float) -> float | None:
    """The `q`-th percentile (0-100) by the nearest-rank method; None without samples."""
    if not samples:
        return None
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summarize(samples: Sequence[float]) -> Summary:
    """n, p50, p90, p99, max and mean of `samples` (values in ms, rounded to µs)."""

    def r(value: float | None) -> float | None:
        return None if value is None else round(value, 3)

    return {
        "n": len(samples),
        "p50": r(percentile(samples, 50)),
        "p90": r(percentile(samples, 90)),
        "p99": r(percentile(samples, 99)),
        "max": r(max(samples)) if samples else None,
        "mean": r(sum(samples) / len(samples)) if samples else None,
    }


def shifted(samples: Sequence[float], by: float) -> list[float]:
    """`samples` minus `by` each (e.g. a latency minus the provider's own response time)."""
    return [s - by for s in samples]
