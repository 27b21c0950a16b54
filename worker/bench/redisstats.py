"""What Redis did per text: commands (INFO commandstats) and round trips (INFO stats), between two snapshots.

Commands run inside a Lua script (`redis.call`) and inside MULTI/EXEC are counted one by one by
`INFO commandstats`, beside the EVALSHA / MULTI / EXEC themselves (checked on the redis-server the
benchmark uses; docs/benchmark.md). A round trip is one request read from a client socket
(`total_reads_processed`): a single command, a whole MULTI…EXEC pipeline and a script call are one
each. The orchestrator's own INFO calls and its samplers' requests are subtracted.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import redis


@dataclass(frozen=True)
class Counters:
    commands: Counter[str]
    reads: int
    #: Redis's own CPU seconds (used_cpu_user + used_cpu_sys of the server process)
    cpu: float


def snapshot(client: redis.Redis) -> Counters:
    """One INFO call (so one round trip and one `info` command, both subtracted in `per_text`)."""
    info = client.info("all")
    commands = Counter(
        {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items() if k.startswith("cmdstat_")}
    )
    cpu = float(info.get("used_cpu_user", 0.0)) + float(info.get("used_cpu_sys", 0.0))
    return Counters(commands, int(info.get("total_reads_processed", 0)), cpu)


def per_text(
    before: Counters, after: Counters, texts: int, *, own_requests: int = 0, own: Counter[str] | None = None
) -> dict[str, Any]:
    """Commands and round trips per text between two snapshots; `own_requests` and `own`: the
    requests and commands the orchestrator made meanwhile besides the INFO of `after` (its
    occupancy samples)."""
    ran = after.commands - before.commands - (own or Counter())
    ran.pop("info", None)
    n = max(texts, 1)
    reads = after.reads - before.reads - 1 - own_requests
    return {
        "texts": texts,
        "total": round(sum(ran.values()) / n, 2),
        "round_trips": round(max(reads, 0) / n, 2),
        "redis_cpu_ms": round((after.cpu - before.cpu) * 1000 / n, 4),
        "by_command": {command: round(count / n, 3) for command, count in ran.most_common()},
    }


def capacity(per: dict[str, Any] | None) -> float | None:
    """Texts per second one Redis instance can carry: one core ÷ Redis's CPU per text (Redis runs
    commands on one thread, so one core is its ceiling)."""
    if not per or not per.get("redis_cpu_ms"):
        return None
    return round(1000.0 / float(per["redis_cpu_ms"]), 0)
