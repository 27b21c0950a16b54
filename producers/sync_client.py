"""`SyncSmsClient`: the same as `SmsClient`, for code without an event loop.

Every Redis call is bounded without an event loop's timers: connections have a connect and a
socket timeout (the enqueue budget), and the blocking `XREAD` of a wait is read with its own
per-read timeout (the block plus half a second), so a Redis that accepts connections and never
answers cannot hold `send()` past its bound.

Unlike `SmsClient`, each waiting send reads its call's stream itself, on a pooled connection it
holds while it waits: a blocking client's concurrency is its threads, and each thread holds at most
one connection at a time (its push, or its wait's read), so the pool never exceeds the threads that
use the client. A shared reader thread (`producers/reader.py` in threads) would save connections
only for more threads than that, and would add two thread hand-offs to every event.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import Any, Self

from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from producers import tracing
from producers.base import ENQUEUE_TIMEOUT, ClientBase, delivery_target, enqueue_args, retract_args
from producers.channel import absorb, parse_entries, reply_entries
from producers.contract import CallContext, Event, Job, VariableValue, events_key
from producers.delivery import DeliveryResult
from producers.enqueue import (
    ENQUEUE,
    ENQUEUE_SHA,
    RETRACT,
    UNCONFIRMED,
    after_retract,
    enqueue_answer,
    not_queued,
    retract_budget,
    unreachable,
)
from producers.envelope import task_message
from producers.jobs import DEFAULT_EXPIRES_IN, build_job
from producers.reader import GRACE as _GRACE
from producers.reader import MAX_BLOCK, RECONNECT_PAUSE
from producers.redis_url import close_sync, sync_client
from producers.results import SendResult


class SyncSmsClient(ClientBase[Redis]):
    """Blocking twin of `SmsClient`: `send()` returns `accepted`, `failed` or `pending`, with the same
    guarantees (`pending` only for a job that is in Redis; a bounded enqueue; a bounded wait)."""

    def __init__(
        self, redis: Redis, *, owns_redis: bool = False, enqueue_timeout: float = ENQUEUE_TIMEOUT
    ) -> None:
        super().__init__(redis, owns_redis=owns_redis, enqueue_timeout=enqueue_timeout)

    @classmethod
    def from_url(cls, url: str, *, enqueue_timeout: float = ENQUEUE_TIMEOUT, **redis_options: Any) -> Self:
        """A client with its own connection pool; `redis_options` go to the pool's connections.
        `url` is `redis://…` or a Sentinel URL (`producers/redis_url.py`).

        Connections time out after `enqueue_timeout` seconds without an answer (connecting: at most
        1 s), which is what bounds the enqueue; blocking reads set their own longer timeout.
        """
        options: dict[str, Any] = {
            "socket_connect_timeout": min(1.0, enqueue_timeout),
            "socket_timeout": enqueue_timeout,
            "socket_keepalive": True,
        }
        options.update(redis_options)
        return cls(sync_client(url, **options), owns_redis=True, enqueue_timeout=enqueue_timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_redis:
            close_sync(self._redis)

    @tracing.traced_send
    def send(
        self,
        *,
        agent_id: str,
        call: CallContext,
        template: str | None = None,
        variables: Mapping[str, VariableValue] | None = None,
        message: str | None = None,
        to: str | None = None,
        from_: str | None = None,
        connection: str | None = None,
        idempotency_key: str | None = None,
        timeout: float = 5.0,
        expires_in: float = DEFAULT_EXPIRES_IN,
    ) -> SendResult:
        """Queue one SMS and wait up to `timeout` seconds for its outcome (see `SmsClient.send`).

        `pending` only when the job is in Redis; a job that could not be queued within the enqueue
        budget ends `failed` / `provider_unavailable`, "the SMS was not queued: …".
        """
        job = build_job(
            agent_id=agent_id, call=call, template=template, variables=variables, message=message,
            to=to, from_=from_, connection=connection, idempotency_key=idempotency_key,
            expires_in=expires_in,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        queued = self._enqueue_within_budget(job)
        if isinstance(queued, SendResult):
            return queued
        return self.wait(job, timeout=deadline - time.monotonic(), since=queued)

    def _enqueue_within_budget(self, job: Job) -> str | SendResult:
        """The `queued` event's stream id, or the `not queued` result (see `SmsClient`).

        Bounded by the connections' timeouts: a connection error is tried again until the budget
        is spent; a timeout or another error retracts the push (producers/enqueue.py).
        """
        message = task_message(job)
        budget = self._enqueue_timeout
        deadline = time.monotonic() + budget
        reason = self._budget_reason()
        attempt = 0
        while True:
            try:
                queued = self.enqueue(job, message)
                return queued if queued is not None else not_queued(job, reason)
            except (RedisConnectionError, RedisTimeoutError) as exc:
                reason = unreachable(exc)
                pause = 0.0 if attempt == 0 else RECONNECT_PAUSE
                if time.monotonic() + pause >= deadline:
                    break
                time.sleep(pause)
                attempt += 1
            except (RedisError, OSError) as exc:
                reason = unreachable(exc)
                break
        return self._retract(job, message, reason)

    def _retract(self, job: Job, message: bytes, reason: str) -> str | SendResult:
        """Make sure a push that failed is either queued (a worker has it) or never will be."""
        args = retract_args(job, message, reason)
        deadline = time.monotonic() + retract_budget(self._enqueue_timeout)
        while True:
            try:
                reply = self._redis.eval(RETRACT, 3, *args)
                return after_retract(job, reply, reason)
            except (RedisConnectionError, RedisTimeoutError):
                if time.monotonic() + RECONNECT_PAUSE >= deadline:
                    break
                time.sleep(RECONNECT_PAUSE)
            except (RedisError, OSError):
                break
        return not_queued(job, reason + UNCONFIRMED)

    def enqueue(self, job: Job, message: bytes | None = None) -> str | None:
        """Push the job and its `queued` event in one fenced Lua call (see `SmsClient.enqueue`)."""
        args = enqueue_args(job, message or task_message(job))
        try:
            reply = self._redis.evalsha(ENQUEUE_SHA, 3, *args)
        except NoScriptError:  # a restarted or flushed Redis: EVAL caches the script again
            reply = self._redis.eval(ENQUEUE, 3, *args)
        return enqueue_answer(reply)

    def wait(self, job: Job, *, timeout: float, since: str = "0-0") -> SendResult:
        """The job's outcome, or `pending` after `timeout` (see `SmsClient.wait`)."""
        seen: list[Event] = []
        last_id = since
        deadline = time.monotonic() + max(timeout, 0.0)
        key = events_key(job.call.call_id)
        while (remaining := deadline - time.monotonic()) > 0:
            block = min(remaining, MAX_BLOCK)
            try:
                reply = self._xread(key, last_id, block)
            except (RedisError, OSError):
                # Redis went away: try again until our own deadline (see SmsClient.wait).
                time.sleep(min(RECONNECT_PAUSE, max(deadline - time.monotonic(), 0)))
                continue
            last_id, done = absorb(job.job_id, reply, seen, last_id)
            if done:
                break
        return SendResult.from_events(job, seen)

    def wait_delivery(
        self, result_or_job_id: SendResult | str, *, call_id: str | None = None, timeout: float = 10.0
    ) -> DeliveryResult:
        """The SMS's delivery state within `timeout` seconds (see `SmsClient.wait_delivery`)."""
        job_id, call_id = delivery_target(result_or_job_id, call_id)
        seen: list[Event] = []
        last_id = "0-0"
        deadline = time.monotonic() + max(timeout, 0.0)
        key = events_key(call_id)
        while True:
            remaining = deadline - time.monotonic()
            try:
                if remaining > 0:
                    reply = self._xread(key, last_id, min(remaining, MAX_BLOCK))
                else:  # the last look, without blocking
                    reply = self._redis.xread({key: last_id})
            except (RedisError, OSError):
                time.sleep(min(RECONNECT_PAUSE, max(deadline - time.monotonic(), 0)))
                reply = None
            for entry_id, event in parse_entries(reply_entries(reply)):
                last_id = entry_id
                if DeliveryResult.relevant(job_id, event):
                    seen.append(event)
            if DeliveryResult.settled_by(job_id, seen) or remaining <= 0:
                return DeliveryResult.from_events(job_id, seen)

    def events(
        self, call_id: str, *, since: str = "0-0", idle_timeout: float | None = None
    ) -> Iterator[Event]:
        """Every event of the call from `since` (see `SmsClient.events`)."""
        key = events_key(call_id)
        last_id = since
        idle_deadline = None if idle_timeout is None else time.monotonic() + idle_timeout
        while True:
            block = MAX_BLOCK if idle_deadline is None else min(MAX_BLOCK, idle_deadline - time.monotonic())
            if block <= 0:
                return
            reply = self._xread(key, last_id, block)
            entries = parse_entries(reply_entries(reply))
            for entry_id, event in entries:
                last_id = entry_id
                yield event
            if entries and idle_timeout is not None:
                idle_deadline = time.monotonic() + idle_timeout

    def _xread(self, key: str, last_id: str, block: float) -> Any:
        """One `XREAD BLOCK` on `key` after `last_id`, given up `block` + 0.5 s later whatever the
        connection's own socket timeout (which bounds the enqueue and is shorter than a block)."""
        pool = self._redis.connection_pool
        conn = pool.get_connection()
        try:
            conn.send_command(  # type: ignore[no-untyped-call]
                "XREAD", "BLOCK", max(int(block * 1000), 1), "STREAMS", key, last_id
            )
            reply = conn.read_response(timeout=block + _GRACE)
        finally:
            pool.release(conn)
        callback = self._redis.response_callbacks.get("XREAD")  # type: ignore[no-untyped-call]
        return callback(reply) if callback is not None and reply is not None else reply
