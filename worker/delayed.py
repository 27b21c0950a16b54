"""Retries that wait in Redis, not in a worker: the delayed queue `sms:delayed`.

Celery publishes a retry as a new task message with an ETA. kombu's Redis transport would push it
onto the queue, a worker would reserve it and hold it in memory (and in `unacked`) until its ETA —
so a worker that dies takes its waiting retries with it until the visibility timeout, and a wait
longer than the visibility timeout gets the message handed to a second worker. Here the transport
(`worker/transport.py`) puts a message whose ETA is in the future into a sorted set scored by its
due time instead, and every worker runs a `Mover` thread that moves due messages onto the
consuming end of the queue in one Lua call (atomic: a message moves once, however many workers
try). No worker holds a waiting retry, so a crash loses none and the visibility timeout needs no
room for retries.

The mover wakes at the due time of the retries its own process scheduled (so a retry starts on
time), and at least every `poll` seconds for the others' (a dead worker's retries move when due,
within `poll`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import redis
import structlog

from producers.contract import DELAYED_KEY, QUEUE

log = structlog.get_logger("worker.delayed")

# KEYS: the delayed sorted set, the queue. ARGV: the most to move in one call.
# Returns {moved, ms until the next entry is due (-1: none)}.
_MOVE_DUE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, message in ipairs(due) do
  redis.call('ZREM', KEYS[1], message)
  redis.call('RPUSH', KEYS[2], message)
end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local wait = -1
if nxt[2] then wait = math.max(0, tonumber(nxt[2]) - now) end
return {#due, wait}
"""

_BATCH = 500


class Mover:
    """The thread that moves due retries from `sms:delayed` onto the `sms` queue."""

    def __init__(
        self, client_factory: Callable[[], redis.Redis], *, poll: float = 0.5, queue: str = QUEUE
    ) -> None:
        self._factory = client_factory
        self._client: redis.Redis | None = None
        self._script: object | None = None
        self._poll = poll
        self._queue = queue
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._next_due: float | None = None  # epoch seconds of the earliest retry this process scheduled
        self._thread = threading.Thread(target=self._run, name="sms-delayed-mover", daemon=True)
        self.moved = 0

    def start(self) -> Mover:
        self._thread.start()
        return self

    def notify(self, due_epoch: float) -> None:
        """A retry due at `due_epoch` was scheduled: wake up then (or now, to re-plan)."""
        with self._lock:
            if self._next_due is None or due_epoch < self._next_due:
                self._next_due = due_epoch
                self._wake.set()

    def move_due(self) -> float | None:
        """Move what is due; returns seconds until the next entry is due (None: nothing waits)."""
        if self._client is None:
            self._client = self._factory()
            self._script = self._client.register_script(_MOVE_DUE)
        assert self._script is not None
        moved, wait_ms = self._script(keys=[DELAYED_KEY, self._queue], args=[_BATCH])  # type: ignore[operator]
        self.moved += int(moved)
        if int(moved) >= _BATCH:
            return 0.0
        return None if int(wait_ms) < 0 else int(wait_ms) / 1000

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                wait = self.move_due()
            except redis.RedisError as exc:
                log.warning("queue.delayed_move_failed", error=type(exc).__name__)
                wait = self._poll
            with self._lock:
                now = time.time()
                if self._next_due is not None and self._next_due <= now:
                    self._next_due = None
                own = None if self._next_due is None else max(0.0, self._next_due - now)
                self._wake.clear()
            timeout = min(x for x in (self._poll, wait, own) if x is not None)
            if timeout > 0:
                self._wake.wait(timeout)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(2)
        if self._client is not None:
            self._client.close()
            self._client = None


_mover: Mover | None = None


def install(mover: Mover | None) -> None:
    """Make `mover` the one this process's transport notifies (None: forget it)."""
    global _mover
    _mover = mover


def notify(due_epoch: float) -> None:
    """Called by the transport when it schedules a message; a no-op without a mover (the other
    workers' movers still move it when due)."""
    if _mover is not None:
        _mover.notify(due_epoch)
