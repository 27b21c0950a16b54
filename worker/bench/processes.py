"""Starting, probing and always stopping the run's subprocesses: the fakes, the workers, the raw worker.

Every child is registered in a `Processes` set, which stops them all (SIGTERM, then SIGKILL after a
grace period, newest first) however the run ends. Children run in their own session, so a Ctrl-C
reaches only the orchestrator, which then stops them in order; on Linux each child also gets
SIGTERM if the orchestrator dies without cleaning up (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from worker.redis_server import free_port

_PR_SET_PDEATHSIG = 1
_LEAKY_ENV = ("SMS_", "TWILIO_", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy")


def die_with_parent() -> None:
    """Ask Linux to SIGTERM this process when its parent dies (a no-op elsewhere)."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def child_env(extra: Mapping[str, str]) -> dict[str, str]:
    """The environment of a child: ours without SMS_*, TWILIO_* or proxies, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_LEAKY_ENV)}
    env["NO_PROXY"] = "127.0.0.1,localhost"
    env.update(extra)
    return env


class BenchError(RuntimeError):
    """Something the benchmark needs did not start or did not answer; the message says what."""


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    #: our workers' /readyz and /metrics port; the bare worker's ready file
    metrics_port: int | None = None
    ready_file: Path | None = None
    _files: list[IO[bytes]] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.process.pid

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


class Processes:
    """The children of one run; `close()` stops every one still running, newest first."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        logdir.mkdir(parents=True, exist_ok=True)
        self._children: list[Child] = []
        #: every child ever started, by name: the report lists them, the test checks they are gone
        self.started: dict[str, int] = {}

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def spawn(
        self, name: str, argv: list[str], env: Mapping[str, str], *, pipe_stdout: bool = False
    ) -> Child:
        log = self.logdir / f"{name}.log"
        log_file = log.open("wb")
        process = subprocess.Popen(
            argv,
            env=child_env(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if pipe_stdout else log_file,
            stderr=log_file,
            start_new_session=True,
            preexec_fn=die_with_parent,  # safe: the orchestrator starts no threads
        )
        child = Child(name, process, log, _files=[log_file])
        self._children.append(child)
        self.started[name] = process.pid
        return child

    def stop(self, child: Child, *, grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it is still running after `grace` seconds."""
        process = child.process
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                process.wait(5)
        if process.stdout is not None:
            process.stdout.close()
        for f in child._files:
            f.close()
        if child in self._children:
            self._children.remove(child)

    def stop_all(self, children: list[Child], *, grace: float = 10.0) -> None:
        """Stop several at once: SIGTERM to all, then wait for each (SIGKILL past the grace)."""
        for child in children:
            if child.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    child.process.terminate()
        deadline = time.monotonic() + grace
        for child in children:
            self.stop(child, grace=max(0.1, deadline - time.monotonic()))

    def close(self) -> None:
        self.stop_all(list(reversed(self._children)))


# -- the fake provider -----------------------------------------------------------------------------


def start_fake(processes: Processes, name: str, latency_ms: float, timeout: float = 30.0) -> str:
    """A fake Twilio process answering after `latency_ms`; returns its base URL (its first line)."""
    argv = [
        sys.executable, "-m", "worker.testing", "twilio", "--port", "0",
        "--latency-ms", str(latency_ms), "--no-validate",
    ]  # fmt: skip
    child = processes.spawn(name, argv, {}, pipe_stdout=True)
    assert child.process.stdout is not None
    fd = child.process.stdout.fileno()
    line = b""
    deadline = time.monotonic() + timeout
    while not line.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        readable, _, _ = select.select([fd], [], [], max(remaining, 0))
        chunk = os.read(fd, 256) if readable else b""
        if not chunk:
            raise BenchError(f"the fake provider {name} did not print its URL:\n{child.tail()}")
        line += chunk
    return line.decode().strip()


# -- workers ----------------------------------------------------------------------------------------


def start_worker(
    processes: Processes,
    index: int,
    *,
    redis_url: str,
    config: Path,
    concurrency: int,
    extra_env: Mapping[str, str] | None = None,
    extra_args: Sequence[str] = (),
) -> Child:
    """`celery -A worker worker`: our pipeline, logs at WARNING, /readyz on a port of its own;
    `extra_env` and `extra_args` come last, so they override (e.g. SMS_TASK_EVENTS, -P)."""
    port = free_port()
    env = {
        "SMS_REDIS_URL": redis_url,
        "SMS_CONFIG_FILE": str(config),
        "SMS_CONCURRENCY": str(concurrency),
        "SMS_LOG_LEVEL": "WARNING",
        "SMS_LOG_FORMAT": "json",
        "SMS_METRICS_PORT": str(port),
        "SMS_METRICS_HOST": "127.0.0.1",
        "SMS_ALLOW_PRIVATE_ENDPOINTS": "true",
        # The send path is measured: no status polls (a fetch per text 5 s later, with no callback
        # configured) mixed into later phases. `--worker-env SMS_RECEIPT_POLL_SCHEDULE=5,15,45`.
        "SMS_RECEIPT_POLL_SCHEDULE": "",
        **(extra_env or {}),
    }
    argv = [
        sys.executable, "-m", "celery", "-A", "worker", "worker",
        "--without-mingle", "--without-gossip", "-n", f"bench-ours-{index}@%h", *extra_args,
    ]  # fmt: skip
    child = processes.spawn(f"worker-ours-{index}", argv, env)
    child.metrics_port = port
    return child


def start_bare_worker(processes: Processes, index: int, *, redis_url: str, concurrency: int) -> Child:
    """`celery -A worker.bench.bare worker`: baseline A's bare app, same pool and concurrency."""
    ready = processes.logdir / f"worker-bare-{index}.ready"
    ready.unlink(missing_ok=True)
    env = {"BENCH_REDIS_URL": redis_url, "BENCH_READY_FILE": str(ready)}
    argv = [
        sys.executable, "-m", "celery", "-A", "worker.bench.bare", "worker", "-P", "threads",
        "-c", str(concurrency), "--without-mingle", "--without-gossip", "--loglevel", "WARNING",
        "-n", f"bench-bare-{index}@%h",
    ]  # fmt: skip
    child = processes.spawn(f"worker-bare-{index}", argv, env)
    child.ready_file = ready
    return child


def start_raw_worker(processes: Processes, redis_url: str) -> Child:
    """The floor's minimal worker: BRPOP a job, LPUSH the reply."""
    return processes.spawn("worker-raw", [sys.executable, "-m", "worker.bench.rawworker", redis_url], {})


def _ready(child: Child) -> bool:
    if child.ready_file is not None:
        return child.ready_file.exists()
    if child.metrics_port is None:
        return True
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{child.metrics_port}/readyz", timeout=1) as answer:
            return int(answer.status) == 200
    except (urllib.error.URLError, OSError):
        return False


def wait_ready(children: list[Child], timeout: float = 60.0) -> None:
    """Until every worker consumes from its queue; raises `BenchError` with the log of one that died."""
    deadline = time.monotonic() + timeout
    waiting = list(children)
    while waiting:
        for child in list(waiting):
            if child.process.poll() is not None:
                raise BenchError(f"{child.name} exited ({child.process.returncode}):\n{child.tail()}")
            if _ready(child):
                waiting.remove(child)
        if waiting and time.monotonic() > deadline:
            raise BenchError(f"{waiting[0].name} not ready after {timeout:.0f} s:\n{waiting[0].tail()}")
        if waiting:
            time.sleep(0.05)


def scrape(child: Child) -> str:
    """Our worker's /metrics text ("" when it does not answer)."""
    if child.metrics_port is None:
        return ""
    try:
        url = f"http://127.0.0.1:{child.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=2) as answer:
            text: str = answer.read().decode()
            return text
    except (urllib.error.URLError, OSError):
        return ""
