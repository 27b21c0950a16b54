"""CPU and memory of the run's processes, from /proc (psutil is not a dependency).

CPU: what each group of processes spent per message, and how busy the rest of the machine was
meanwhile (other processes make a 2-core benchmark noisy; this says how much). Memory: the RSS of
each worker process and of its children.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worker.bench.processes import Child

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_seconds(pid: int, *, reaped: bool = False) -> float:
    """User + system CPU seconds of `pid`, all its threads (0 when it is gone); with `reaped`, plus
    what its children that already exited and were waited for used (cutime + cstime)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        own = int(fields[11]) + int(fields[12])
        return (own + (int(fields[13]) + int(fields[14]) if reaped else 0)) / _TICK
    except (OSError, ValueError, IndexError):
        return 0.0


def tree_seconds(pid: int) -> float:
    """CPU seconds of `pid` and of every process below it, living or reaped: a prefork worker's
    pool children count toward the worker (the threads pool has none)."""
    return process_seconds(pid, reaped=True) + sum(process_seconds(kid) for kid in descendants(pid))


def machine_seconds() -> float:
    """CPU seconds the whole machine has been busy (all CPUs, from /proc/stat; 0 if unavailable)."""
    try:
        line = Path("/proc/stat").read_text().splitlines()[0].split()
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in line[1:9])
        return (user + nice + system + irq + softirq + steal) / _TICK
    except (OSError, ValueError, IndexError):
        return 0.0


@dataclass(frozen=True)
class Snapshot:
    at: float
    groups: dict[str, float]
    machine: float
    #: CPU seconds of each process (with its children), by pid
    processes: dict[int, float] = field(default_factory=dict)


def snapshot(groups: Mapping[str, Sequence[int]]) -> Snapshot:
    """CPU seconds so far by group and by process; each process with its children, except this
    process (the orchestrator), whose children are the run's other processes."""
    me = os.getpid()
    per_pid = {
        pid: process_seconds(pid) if pid == me else tree_seconds(pid)
        for pids in groups.values()
        for pid in pids
    }
    return Snapshot(
        time.monotonic(),
        {name: sum(per_pid[pid] for pid in pids) for name, pids in groups.items()},
        machine_seconds(),
        per_pid,
    )


def usage(before: Snapshot, after: Snapshot, messages: int) -> dict[str, Any]:
    """Per group, CPU ms per message (each process's own counters, children included, over the
    window between the snapshots, ÷ the messages completed in it); per process the same in
    `per_process`; `ours_cores`: CPUs the run's processes kept busy; `other_cores`: CPUs kept busy
    by processes outside the run meanwhile."""
    elapsed = max(after.at - before.at, 1e-9)
    spent = {name: after.groups[name] - before.groups.get(name, 0.0) for name in after.groups}
    out: dict[str, Any] = {
        f"{name}_ms_per_msg": round(seconds * 1000 / messages, 3) if messages else None
        for name, seconds in spent.items()
    }
    out["per_process"] = {
        str(pid): round((seconds - before.processes.get(pid, 0.0)) * 1000 / messages, 3) if messages else None
        for pid, seconds in after.processes.items()
    }
    out["messages"] = messages
    out["window_s"] = round(elapsed, 3)
    if after.machine and before.machine:
        others = (after.machine - before.machine) - sum(spent.values())
        out["other_cores"] = round(max(others, 0.0) / elapsed, 2)
    out["ours_cores"] = round(sum(spent.values()) / elapsed, 2)
    return out


def local_ports(pid: int, port: int) -> set[int]:
    """Local ports of the TCP connections `pid` has open to 127.0.0.1:`port` (its sockets in
    /proc/<pid>/fd matched with /proc/<pid>/net/tcp)."""
    try:
        inodes = set()
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        found = set()
        for table in ("tcp", "tcp6"):
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
                    cols = line.split()
                    remote_port = int(cols[2].rpartition(":")[2], 16)
                    if remote_port == port and cols[3] == "01" and cols[9] in inodes:  # 01: ESTABLISHED
                        found.add(int(cols[1].rpartition(":")[2], 16))
        return found
    except (OSError, ValueError, IndexError):
        return set()


def redis_connections(pid: int, port: int) -> int:
    """TCP connections `pid` has open to 127.0.0.1:`port`."""
    return len(local_ports(pid, port))


def rss_mb(pid: int) -> float | None:
    """VmRSS of `pid` in MB (from /proc; None when it is gone or /proc is unavailable)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def descendants(pid: int) -> list[int]:
    """Every process below `pid`, found through the parent ids in /proc/*/stat."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        parents.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    frontier = [pid]
    while frontier:
        kids = parents.get(frontier.pop(), [])
        found.extend(kids)
        frontier.extend(kids)
    return found


def memory(children: list[Child]) -> list[dict[str, Any]]:
    """RSS of each worker process and of its child processes (the threads pool has none)."""
    rows = []
    for child in children:
        kids = descendants(child.pid)
        kid_rss = [rss for rss in (rss_mb(k) for k in kids) if rss is not None]
        own = rss_mb(child.pid)
        rows.append({
            "worker": child.name,
            "rss_mb": None if own is None else round(own, 1),
            "children": len(kids),
            "children_rss_mb": round(sum(kid_rss), 1),
        })  # fmt: skip
    return rows
