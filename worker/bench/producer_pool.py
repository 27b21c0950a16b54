"""Producer processes: separate, spawned Python processes that run the load drivers.

Each one serves calls sent over a pipe — `(function, args)` → `(ok, result or traceback)` — so a
run starts its producers once and reuses them for every phase. They ignore SIGINT (the
orchestrator stops them) and get SIGTERM if the orchestrator dies.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import signal
import time
import traceback
from collections.abc import Callable
from typing import Any

from worker.bench.processes import BenchError, die_with_parent


def _serve(connection: multiprocessing.connection.Connection) -> None:
    """A producer process: run each (function, args) it is sent and send back the result."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the orchestrator handles Ctrl-C and stops us
    die_with_parent()
    while True:
        try:
            function, args = connection.recv()
        except (EOFError, OSError):
            return
        try:
            outcome: tuple[bool, Any] = (True, function(*args))
        except BaseException:
            outcome = (False, traceback.format_exc())
        connection.send(outcome)


class Producers:
    """`count` separate producer processes (spawned, so nothing of the orchestrator is inherited)."""

    def __init__(self, count: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._workers: list[tuple[multiprocessing.connection.Connection, Any]] = []
        try:
            for i in range(count):
                ours, theirs = context.Pipe()
                process = context.Process(
                    target=_serve, args=(theirs,), name=f"bench-producer-{i}", daemon=True
                )
                process.start()
                theirs.close()
                self._workers.append((ours, process))
        except BaseException:
            self.close()
            raise

    @property
    def pids(self) -> dict[str, int]:
        return {process.name: process.pid for _, process in self._workers}

    def run(
        self,
        calls: list[tuple[Callable[..., Any], tuple[Any, ...]]],
        timeout: float,
        *,
        tick: Callable[[], None] | None = None,
        every: float = 0.5,
    ) -> list[Any]:
        """Run each call on its own producer process, all at once; their results in order.

        While waiting, `tick` (if given) is called about every `every` seconds (to sample the system).
        """
        if len(calls) > len(self._workers):
            raise ValueError(f"{len(calls)} calls for {len(self._workers)} producer processes")
        for (connection, _), call in zip(self._workers, calls, strict=False):
            connection.send(call)
        deadline = time.monotonic() + timeout
        results = []
        for connection, process in self._workers[: len(calls)]:
            while not connection.poll(min(every, max(0.0, deadline - time.monotonic()))):
                if time.monotonic() >= deadline:
                    raise BenchError(f"{process.name} did not finish within {timeout:.0f} s")
                if tick is not None:
                    tick()
            ok, value = connection.recv()
            if not ok:
                raise BenchError(f"{process.name} failed:\n{value}")
            results.append(value)
        return results

    def one(self, function: Callable[..., Any], *args: Any, timeout: float) -> Any:
        return self.run([(function, args)], timeout)[0]

    def close(self) -> None:
        for connection, _ in self._workers:
            connection.close()
        for _, process in self._workers:
            process.join(2)
            if process.is_alive():
                process.terminate()
                process.join(3)
            if process.is_alive():
                process.kill()
                process.join()
        self._workers.clear()
