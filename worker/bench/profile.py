"""`midcall-sms bench --profile`: where one send's CPU goes, stage by stage, in µs per text.

One of our workers (then one bare Celery worker, for comparison) is driven open loop at
`--profile-rate` msg/s to the 0 ms fake for `--duration` s from one producer process, while
`py-spy record` samples the worker and the producer (`--nonblocking`: the processes are not
paused; `--gil`: only the thread holding the GIL is sampled, so the 200 threads waiting for it are
not counted as work, and C code that releases the GIL is not seen). Each process's CPU per text
comes from its own counters (/proc) over the same window; a stage's µs per text is its share of
the samples × that.

A sample's stage is the deepest frame of this repository's code in its stack (`worker/…`,
`producers/…`; the benchmark's own driver, `worker/bench/…`, is labelled as such), and beside it
the library the time went into below that frame (redis, twilio, requests, httpx, pydantic,
json, …). A stack with none of our frames is Celery's and kombu's own loop, or the event loop, or
the interpreter: it is labelled by its outermost library. py-spy needs ptrace rights on the
processes (root, or the same user with `kernel.yama.ptrace_scope` 0); without them the profile says
why and still reports the CPU per text.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from worker.bench import baselines, load, proc, processes, redisstats, workload
from worker.bench.processes import Child

_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")
_OURS = ("worker", "producers")
_DRIVER = "worker/bench/"
#: friendlier names for the modules a send passes through (others are shown by their path)
_NAMES = {
    "worker/tasks.py": "task entry (worker/tasks.py)",
    "worker/service.py": "orchestration (worker/service.py)",
    "worker/idempotency.py": "claim + outcome scripts (worker/idempotency.py)",
    "worker/events.py": "events (worker/events.py)",
    "worker/logs.py": "canonical log line (worker/logs.py)",
    "worker/metrics.py": "metrics (worker/metrics.py)",
    "worker/transport.py": "transport (worker/transport.py)",
    "producers/client.py": "SmsClient (producers/client.py)",
    "producers/channel.py": "result channel (producers/channel.py)",
    "producers/results.py": "results (producers/results.py)",
    "producers/contract.py": "contract / validation (producers/contract.py)",
}
_CELERY = {"celery", "kombu", "billiard", "amqp", "vine", "click"}
#: frames every thread has at its root
_PLUMBING = {"threading", "runpy", "<module>", "<frozen runpy>", "multiprocessing"}
_OUTER = {
    "asyncio": "asyncio event loop (outside a send's own code)",
    "concurrent": "threads pool (concurrent.futures)",
    "httpx": "httpx (the provider call)",
    "httpcore": "httpx (the provider call)",
}


def py_spy() -> str | None:
    """The py-spy binary (the `[dev]` extra installs it), or None."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def _package(path: str) -> str:
    head = path.split("/", 1)[0]
    return head.removesuffix(".py") or path


def _outside(libraries: list[str]) -> tuple[str, str]:
    """A stack (or the part below the benchmark's driver) with none of our frames."""
    celery = [i for i, lib in enumerate(libraries) if lib in _CELERY]
    if celery:
        below = libraries[celery[-1] + 1 :]
        return "Celery/kombu loop, outside the task", below[0] if below else "celery/kombu"
    known = [lib for lib in libraries if lib not in _PLUMBING]
    if not known:
        return "interpreter, threads", libraries[-1] if libraries else "?"
    outer = known[0]
    return _OUTER.get(outer, f"{outer}, outside our code"), known[-1]


def classify(stack: list[str]) -> tuple[str, str]:
    """(stage, library) of one sampled stack, frames outermost first (py-spy's raw format)."""
    files = []
    for frame in stack:
        match = _FRAME.match(frame)
        files.append(match.group("file") if match else frame)
    libraries = [_package(f) for f in files]
    ours = [i for i, lib in enumerate(libraries) if lib in _OURS and not files[i].startswith(_DRIVER)]
    if ours:
        deepest = ours[-1]
        module = files[deepest]
        below = libraries[deepest + 1 :]
        return _NAMES.get(module, module), below[0] if below else "(own code)"
    drivers = [i for i, f in enumerate(files) if f.startswith(_DRIVER)]
    if drivers:  # the benchmark's load driver: what it called is the cost (Celery's client, asyncio)
        below = libraries[drivers[-1] + 1 :]
        if not below:
            return "benchmark driver's own code", files[drivers[-1]]
        stage, library = _outside(below)
        if stage.startswith("Celery/kombu"):  # the load driver calling Celery: its client side
            stage = "Celery client: delay() + get()"
        return stage, library
    return _outside(libraries)


def parse(raw: str) -> Counter[tuple[str, str]]:
    """Samples by (stage, library) from py-spy's raw output (`frame;frame;… count` per line)."""
    counts: Counter[tuple[str, str]] = Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            counts[classify(stack.split(";"))] += int(count)
    return counts


def stages(counts: Counter[tuple[str, str]], cpu_ms_per_text: float | None) -> list[dict[str, Any]]:
    """Rows per stage (µs per text, share), each with its libraries, largest first."""
    total = sum(counts.values())
    if not total:
        return []
    by_stage: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for (stage, library), n in counts.items():
        by_stage[stage][library] += n
    rows = []
    for stage, libraries in sorted(by_stage.items(), key=lambda kv: -sum(kv[1].values())):
        share = sum(libraries.values()) / total
        rows.append({
            "stage": stage,
            "share": round(share, 4),
            "us_per_text": None if cpu_ms_per_text is None else round(share * cpu_ms_per_text * 1000, 1),
            "libraries": {lib: round(n / total, 4) for lib, n in libraries.most_common()},
        })  # fmt: skip
    return rows


def _record(binary: str, pid: int, seconds: float, out: Path, rate: int) -> subprocess.Popen[bytes]:
    argv = [
        binary, "record", "--pid", str(pid), "--duration", str(max(1, math.ceil(seconds))),
        "--rate", str(rate), "--format", "raw", "--nonblocking", "--gil", "--output", str(out),
    ]  # fmt: skip
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _warm(args: tuple[Any, ...]) -> tuple[Any, ...]:
    """The driver's arguments for 1 s at 20 msg/s (rate and duration are its 3rd and 5th)."""
    return (*args[:2], 20.0, args[3], 1.0, *args[5:])


def _profiled(
    run: Any, side: str, workers: list[Child], driver: Any, args: Callable[[float], tuple[Any, ...]]
) -> dict[str, Any]:
    """Drive `driver(*args)` on the first producer while py-spy samples the worker and that producer."""
    o = run.options
    outdir = o.out / "profile"
    outdir.mkdir(parents=True, exist_ok=True)
    producer_name, producer_pid = next(iter(run.producers.pids.items()))
    targets = {"worker": workers[0].pid, "producer": producer_pid}
    binary = py_spy()
    recorders: dict[str, subprocess.Popen[bytes]] = {}
    # a short unrecorded run first: imports, connections and caches are not what a send costs
    run.producers.run([(driver, _warm(args(time.monotonic())))], timeout=60)
    start_at = time.monotonic() + 1.0
    before = run.cpu()
    if binary:
        for role, pid in targets.items():
            recorders[role] = _record(
                binary, pid, o.duration + 1.5, outdir / f"{side}-{role}.txt", o.profile_sample_rate
            )
    out = run.producers.run([(driver, args(start_at))], timeout=o.duration + 90)[0]
    after = run.cpu()
    texts = out["sent"]
    usage = run.usage(before, after, texts)
    names = {"worker": workers[0].name, "producer": producer_name}
    result: dict[str, Any] = {"texts": texts, "statuses": out["statuses"], "cpu": usage}
    for role in targets:
        cpu_ms = usage["per_process"].get(names[role])
        block: dict[str, Any] = {"process": names[role], "cpu_ms_per_text": cpu_ms}
        recorder = recorders.get(role)
        if recorder is None:
            block["error"] = "py-spy is not installed (pip install py-spy; the [dev] extra has it)"
        else:
            _, err = recorder.communicate(timeout=o.duration + 60)
            path = outdir / f"{side}-{role}.txt"
            if recorder.returncode != 0 or not path.exists():
                block["error"] = (
                    f"py-spy failed ({recorder.returncode}): {err.decode(errors='replace')[-500:]}"
                )
            else:
                counts = parse(path.read_text())
                block["samples"] = sum(counts.values())
                block["raw"] = str(path)
                block["stages"] = stages(counts, cpu_ms)
        result[role] = block
    result["redis_by_role"] = _by_role(run, side, workers[0])
    return result


#: texts of the MONITOR diagnostic, and the open-loop rate bare Celery's are sent at
_MONITORED, _MONITOR_RATE = 40, 20.0


def _by_role(run: Any, side: str, worker: Child) -> dict[str, Any]:
    """Redis commands per text by the process that sent them, from MONITOR over a few sends after
    the profiled window: the worker's connections are its long-lived ones (from /proc); any other
    client is the producer (one connection per waiting send, or its pooled ones)."""
    with redisstats.Monitor(run.redis_url) as monitor:
        if side == "ours":
            out = run.producers.one(
                load.serial, run.redis_url, workload.AGENT_FAST, _MONITORED, 0, timeout=120
            )
            texts = int(out["messages"])
        else:
            at = time.monotonic() + 0.2
            args = (run.redis_url, run.fast_url, _MONITOR_RATE, at, _MONITORED / _MONITOR_RATE, 10.0)
            texts = int(run.producers.one(baselines.bare_open_loop, *args, timeout=120)["sent"])
        time.sleep(0.3)  # the last outcome's commands
        roles = {str(port): "worker" for port in proc.local_ports(worker.pid, run.redis_port)}
    roles[monitor.port] = ""
    return {"texts": texts, **redisstats.by_role(monitor.lines, roles, texts, other="producer")}


def phase(run: Any, config: Path) -> dict[str, Any]:
    """Profile our worker and producer, then bare Celery's, each at `--profile-rate` msg/s."""
    o = run.options
    rate = float(o.profile_rate)
    seconds = o.duration
    results: dict[str, Any] = {
        "rate": o.profile_rate,
        "duration_s": seconds,
        "sample_rate": o.profile_sample_rate,
    }
    run.say(f"profile: our worker and producer, {rate:g} msg/s for {seconds:g} s (provider 0 ms)")
    workers = run.start_workers(
        lambda i: processes.start_worker(
            run.procs, i, redis_url=run.redis_url, config=config, concurrency=o.concurrency
        ),
        count=1,
    )
    try:
        results["ours"] = _profiled(
            run, "ours", workers, load.open_loop,
            lambda at: (run.redis_url, workload.AGENT_FAST, rate, at, seconds, 10.0),
        )  # fmt: skip
    finally:
        run.stop_workers(workers)
    run.say(f"profile: bare Celery's worker and producer, {rate:g} msg/s for {seconds:g} s")
    workers = run.start_workers(
        lambda i: processes.start_bare_worker(
            run.procs, i, redis_url=run.redis_url, concurrency=o.concurrency
        ),
        count=1,
    )
    try:
        results["bare"] = _profiled(
            run, "bare", workers, baselines.bare_open_loop,
            lambda at: (run.redis_url, run.fast_url, rate, at, seconds, 10.0),
        )  # fmt: skip
    finally:
        run.stop_workers(workers)
    return results


def render(result: dict[str, Any], top: int = 12) -> str:
    """The "where one send's CPU goes" tables: µs per text by stage, worker and producer, ours and bare."""
    parts = [
        f"Where one send's CPU goes: py-spy at {result['sample_rate']} Hz, {result['rate']} msg/s for "
        f"{result['duration_s']:g} s to the 0 ms fake, 1 worker, 1 producer process; µs per text = share of "
        "the samples × the process's CPU per text (/proc)"
    ]
    for side, label in (("ours", "ours"), ("bare", "bare Celery")):
        for role in ("worker", "producer"):
            block = result.get(side, {}).get(role)
            if not block:
                continue
            cpu = block.get("cpu_ms_per_text")
            head = (
                f"\n{label}, {role} ({block['process']}): {cpu if cpu is not None else '—'} ms CPU per text"
            )
            if "error" in block:
                parts.append(f"{head}; no profile: {block['error']}")
                continue
            rows = [
                f"| {r['stage']} | {r['us_per_text'] if r['us_per_text'] is not None else '—'} | "
                f"{r['share'] * 100:.1f} % | "
                + ", ".join(f"{lib} {share * 100:.0f} %" for lib, share in list(r["libraries"].items())[:4])
                + " |"
                for r in block["stages"][:top]
            ]
            parts.append(
                f"{head}, {block['samples']} samples\n| stage | µs per text | share | into (share of all) |\n"
                "|---|---|---|---|\n" + "\n".join(rows)
            )
    roles = [
        (label, role, per)
        for side, label in (("ours", "ours"), ("bare", "bare Celery"))
        for role, per in result.get(side, {}).get("redis_by_role", {}).items()
        if role != "texts"
    ]
    if roles:
        parts.append(
            "\nRedis commands per text by the process that sent them (MONITOR over "
            f"{_MONITORED} sends after the window; a script's commands count to its caller)\n"
            "| pipeline | process | commands | top commands |\n|---|---|---|---|\n"
            + "\n".join(
                f"| {label} | {role} | {per['total']:g} | "
                + ", ".join(f"{c} {n:g}" for c, n in list(per["by_command"].items())[:10])
                + " |"
                for label, role, per in roles
            )
        )
    return "\n".join(parts)
