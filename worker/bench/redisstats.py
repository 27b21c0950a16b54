"""What Redis did per text: commands (INFO commandstats) and round trips (INFO stats), between two snapshots.

Commands run inside a Lua script (`redis.call`) and inside MULTI/EXEC are counted one by one by
`INFO commandstats`, beside the EVALSHA / MULTI / EXEC themselves (checked on the redis-server the
benchmark uses; docs/benchmark.md). A round trip is one request read from a client socket
(`total_reads_processed`): a single command, a whole MULTI…EXEC pipeline and a script call are one
each. The orchestrator's own INFO calls and its samplers' requests are subtracted.
"""

from __future__ import annotations

import threading
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


class Monitor:
    """Redis's MONITOR feed in a thread, for attributing commands to the process that sent them
    (a diagnostic: MONITOR costs Redis CPU, so it never runs during a measured window).

    `lines` holds (client port, command) in order; a command run by a Lua script has the port of
    the EVALSHA that ran it (a script runs atomically, so its commands follow that line at once).
    """

    def __init__(self, url: str) -> None:
        self._client = redis.Redis.from_url(url, socket_timeout=0.3)
        self.lines: list[tuple[str, str]] = []
        self.port = ""
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._read, name="bench-monitor", daemon=True)

    def _read(self) -> None:
        caller = ""
        with self._client.monitor() as feed:  # type: ignore[no-untyped-call]
            sock = getattr(feed.connection, "_sock", None)
            self.port = str(sock.getsockname()[1]) if sock is not None else ""
            self._ready.set()
            while not self._stop.is_set():
                try:
                    line = feed.next_command()
                except (redis.TimeoutError, TimeoutError):
                    continue
                except (redis.ConnectionError, OSError):
                    return
                if not line:
                    continue
                name = str(line["command"]).split(" ", 1)[0].lower()
                if line["client_type"] == "lua":
                    self.lines.append((caller, name))
                else:
                    caller = str(line["client_port"])
                    self.lines.append((caller, name))

    def __enter__(self) -> Monitor:
        self._thread.start()
        self._ready.wait(5)
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(3)
        self._client.close()


def by_role(lines: list[tuple[str, str]], roles: dict[str, str], texts: int, *, other: str) -> dict[str, Any]:
    """Commands per text by the role of the client port that sent them (`other` for ports not in
    `roles`, e.g. the short-lived connections of a producer); `roles[port] == ""` drops a port."""
    counts: dict[str, Counter[str]] = {}
    for port, name in lines:
        role = roles.get(port, other)
        if role:
            counts.setdefault(role, Counter())[name] += 1
    n = max(texts, 1)
    return {
        role: {
            "total": round(sum(c.values()) / n, 2),
            "by_command": {cmd: round(k / n, 2) for cmd, k in c.most_common()},
        }
        for role, c in sorted(counts.items())
    }
