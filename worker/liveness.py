"""Worker liveness in Redis: who is alive, so that a dead worker's texts move on in seconds.

Each worker process is one *instance*, `host:pid:boot` (`boot` is random per process start, so a
restarted container with the same host name and pid is a new instance). While the process lives,
a daemon thread refreshes its heartbeat key (`sms_worker_alive:<instance>`) every
`SMS_HEARTBEAT_INTERVAL` seconds with a TTL of `SMS_HEARTBEAT_TTL` seconds. The thread does not
depend on the consumer's event loop or on the task threads, so a worker busy with slow provider
calls keeps beating; only a process that is gone (SIGKILL, OOM, a lost node) or cut off from Redis
for longer than the TTL stops.

Two things read the heartbeat:
- the transport's sweep (`worker/transport.py`), which hands the messages a dead instance had
  reserved back to the queue at once instead of after the visibility timeout;
- the idempotency claim (`worker/idempotency.py`), which treats a `calling`/`waiting` claim whose
  owner's heartbeat is gone as expired instead of waiting for its lease.

A claim's owner is `<instance>:<random>` (one per delivery), so the heartbeat key is derivable from
the owner (`alive_key_of_owner`).
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
import uuid
from collections.abc import Callable
from typing import Any

import redis
import structlog
from celery import bootsteps, signals

from producers.contract import WORKERS_KEY, worker_alive_key, worker_reserved_key
from worker import delayed
from worker.settings import Settings

log = structlog.get_logger("worker.liveness")

_instance: str | None = None
_instance_pid: int | None = None
_instance_lock = threading.Lock()


def instance_id() -> str:
    """This process's worker instance: `host:pid:boot`, new in every process (and after a fork)."""
    global _instance, _instance_pid
    pid = os.getpid()
    if _instance is None or _instance_pid != pid:
        with _instance_lock:
            if _instance is None or _instance_pid != pid:
                _instance = f"{socket.gethostname()}:{pid}:{secrets.token_hex(4)}"
                _instance_pid = pid
    return _instance


#: The instance whose heartbeat thread runs in this process (None: none runs).
_beating: str | None = None


def beating() -> bool:
    """This process's instance has a running heartbeat (a worker; not a test or the CLI), so the
    key of every owner it makes is being kept alive."""
    return _beating is not None and _beating == instance_id()


def new_owner() -> str:
    """The owner of one delivery's idempotency claim: `<instance>:<random>`."""
    return f"{instance_id()}:{uuid.uuid4().hex[:12]}"


def instance_of_owner(owner: str) -> str:
    return owner.rsplit(":", 1)[0]


def alive_key_of_owner(owner: str) -> str:
    """The heartbeat key of the instance that made `owner`."""
    return worker_alive_key(instance_of_owner(owner))


class Heartbeat:
    """The daemon thread that keeps this instance's heartbeat key alive.

    `start` writes the first beat synchronously (a worker must be visibly alive before it reserves
    anything); a failed beat (Redis unreachable) is retried on the next interval.
    """

    def __init__(
        self,
        client_factory: Callable[[], redis.Redis],
        *,
        ttl: float,
        interval: float,
        instance: str | None = None,
    ) -> None:
        self.instance = instance or instance_id()
        self.key = worker_alive_key(self.instance)
        self._factory = client_factory
        self._client: redis.Redis | None = None
        self._ttl_ms = int(ttl * 1000)
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sms-heartbeat", daemon=True)
        self.beats = 0
        self.failures = 0

    def beat(self) -> bool:
        try:
            if self._client is None:
                self._client = self._factory()
            with self._client.pipeline(transaction=False) as pipe:
                pipe.set(self.key, "1", px=self._ttl_ms)
                pipe.sadd(WORKERS_KEY, self.instance)
                pipe.execute()
        except redis.RedisError as exc:
            self.failures += 1
            if self.failures == 1 or self.failures % 30 == 0:
                log.warning("worker.heartbeat_failed", error=type(exc).__name__, failures=self.failures)
            return False
        self.beats += 1
        return True

    def start(self) -> Heartbeat:
        global _beating
        self.beat()
        self._thread.start()
        _beating = self.instance
        log.info("worker.heartbeat_started", instance=self.instance, ttl_ms=self._ttl_ms)
        return self

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.beat()

    def stop(self, *, forget: bool = True) -> None:
        """Stop beating; with `forget`, remove the key at once (after a graceful drain, nothing of
        this instance is left to take over, and a sweeper may clean up without waiting)."""
        global _beating
        self._stop.set()
        if _beating == self.instance:
            _beating = None
        if self._thread.is_alive():
            self._thread.join(self._interval + 1)
        if self._client is None:
            return
        if forget:
            try:
                with self._client.pipeline(transaction=False) as pipe:
                    pipe.delete(self.key)
                    pipe.srem(WORKERS_KEY, self.instance)
                    pipe.delete(worker_reserved_key(self.instance))
                    pipe.execute()
            except redis.RedisError:
                pass  # the key expires by itself
        self._client.close()
        self._client = None


def _client_factory(settings: Settings) -> Callable[[], redis.Redis]:
    def make() -> redis.Redis:
        from worker import redis_client  # plain Redis or Sentinel, as SMS_REDIS_URL says

        # Short timeouts: a hung Redis must not stall the beat past the TTL unnoticed.
        return redis_client.connect(settings, socket_connect_timeout=2.0, socket_timeout=2.0)

    return make


class LivenessStep(bootsteps.StartStopStep):  # type: ignore[misc]  # celery is untyped
    """Worker bootstep: the heartbeat and the delayed-retry mover, from the worker's creation
    (before it reserves anything) to the end of its shutdown (after the last task)."""

    label = "midcall-sms liveness"

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.heartbeat: Heartbeat | None = None
        self.mover: delayed.Mover | None = None

    def create(self, parent: Any) -> None:
        settings: Settings = parent.app.midcall_settings
        factory = _client_factory(settings)
        self.heartbeat = Heartbeat(
            factory, ttl=settings.heartbeat_ttl, interval=settings.heartbeat_interval
        ).start()
        self.mover = delayed.Mover(factory).start()
        delayed.install(self.mover)
        signals.worker_shutdown.connect(self._on_shutdown, weak=False)

    def _on_shutdown(self, **_: Any) -> None:
        signals.worker_shutdown.disconnect(self._on_shutdown)
        delayed.install(None)
        if self.mover is not None:
            self.mover.stop()
            self.mover = None
        if self.heartbeat is not None:
            self.heartbeat.stop(forget=True)
            self.heartbeat = None
