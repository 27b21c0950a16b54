"""`SmsClient`: what a live-call process (asyncio) uses to text the caller and hear the outcome."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import Any, Self

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from producers import tracing
from producers.base import ENQUEUE_TIMEOUT, ClientBase, delivery_target, enqueue_args, retract_args
from producers.batch import Batcher
from producers.channel import parse_entries, reply_entries
from producers.contract import (
    CallContext,
    Event,
    Job,
    VariableValue,
    events_key,
)
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
from producers.reader import MAX_BLOCK, RECONNECT_PAUSE, Reader
from producers.redis_url import async_client, close_async
from producers.results import SendResult

#: The pool's limit. The client itself holds a handful of connections however many sends wait
#: (one for its reader, one for its batched writes, a pooled one now and then for a retraction or a
#: last look); the rest is for code that uses `SmsClient.redis` directly.
MAX_CONNECTIONS = 2000


class SmsClient(ClientBase[Redis]):
    """Sends SMS through the worker fleet and waits for the outcome, never blocking the event loop.

    ```python
    async with SmsClient.from_url("redis://localhost:6379/0") as sms:
        result = await sms.send(agent_id="agent_abc123", call=call, template="booking_confirmation",
                                variables={...}, idempotency_key=f"{call.call_id}:{tool_call_id}")
    ```
    `send()` raises only for bad arguments; every SMS outcome, including "Redis is down", is a result.
    """

    def __init__(
        self, redis: Redis, *, owns_redis: bool = False, enqueue_timeout: float = ENQUEUE_TIMEOUT
    ) -> None:
        super().__init__(redis, owns_redis=owns_redis, enqueue_timeout=enqueue_timeout)
        # Writes (enqueues, wakes) batched on one connection; waits read through one reader.
        self._batcher = Batcher(redis, timeout=enqueue_timeout + _GRACE)
        self._reader = Reader(redis, self._batcher)
        # Enqueues still running after their send() was cancelled: kept referenced, awaited at close.
        self._enqueues: set[asyncio.Task[str | SendResult]] = set()

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        max_connections: int = MAX_CONNECTIONS,
        enqueue_timeout: float = ENQUEUE_TIMEOUT,
        **redis_options: Any,
    ) -> Self:
        """A client with its own connection pool; `redis_options` go to the pool's connections.

        `url` is `redis://…` or a Sentinel URL, `sentinel://h1:26379;sentinel://h2:26379/0?master_name=NAME`
        (`producers/redis_url.py`): the client then follows the master through failovers.
        The client holds a handful of connections however many sends wait (one reader for all
        waits, one connection for batched writes: `producers/reader.py`, `producers/batch.py`);
        with one server the pool is blocking: past `max_connections` a command waits for a free
        connection instead of failing.
        """
        options: dict[str, Any] = {"socket_connect_timeout": 1.0, "socket_keepalive": True}
        options.update(redis_options)
        client = async_client(url, max_connections=max_connections, **options)
        return cls(client, owns_redis=True, enqueue_timeout=enqueue_timeout)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._enqueues:
            # Let enqueues that outlived a cancelled send() finish (each is bounded by its budget).
            await asyncio.gather(*self._enqueues, return_exceptions=True)
        await self._reader.aclose()
        await self._batcher.aclose()
        if self._owns_redis:
            await close_async(self._redis)

    @tracing.traced_send
    async def send(
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
        """Queue one SMS and wait up to `timeout` seconds for its outcome.

        Returns `accepted`, `failed`, or `pending` when no outcome came in time; `pending` means the
        job is in Redis and is still sent before `expires_in`. The enqueue has its own budget
        (`enqueue_timeout`, 1 s by default), independent of `timeout` and shielded from the
        cancellation of this call: it completes or fails on its own, so a short `timeout` (even
        0.001) cannot cut it off half-way. A job that could not be queued ends `failed` /
        `provider_unavailable`, "the SMS was not queued: …". `send()` returns within
        max(timeout, enqueue_timeout) plus half a second.
        """
        job = build_job(
            agent_id=agent_id, call=call, template=template, variables=variables, message=message,
            to=to, from_=from_, connection=connection, idempotency_key=idempotency_key,
            expires_in=expires_in,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        task = asyncio.ensure_future(self._enqueue_within_budget(job))
        self._enqueues.add(task)
        task.add_done_callback(self._enqueues.discard)
        # shield: cancelling this send() leaves the enqueue to finish (or fail) within its budget.
        queued = await asyncio.shield(task)
        if isinstance(queued, SendResult):
            return queued
        return await self.wait(job, timeout=deadline - time.monotonic(), since=queued)

    async def _enqueue_within_budget(self, job: Job) -> str | SendResult:
        """The `queued` event's stream id once the job is in Redis, or the `not queued` result.

        Connection errors (a restart, a stale pooled connection, a failover) are tried again
        until the budget is spent (the fence makes a second push of the same job a no-op). When
        the budget runs out or Redis fails otherwise, the push is retracted (producers/enqueue.py),
        which says for certain whether the job is queued.
        """
        message = task_message(job)
        budget = self._enqueue_timeout
        deadline = time.monotonic() + budget
        reason = self._budget_reason()
        try:
            async with asyncio.timeout(budget):
                for attempt in itertools.count():
                    try:
                        queued = await self.enqueue(job, message)
                        return queued if queued is not None else not_queued(job, reason)
                    except (RedisConnectionError, RedisTimeoutError) as exc:
                        reason = unreachable(exc)
                        pause = 0.0 if attempt == 0 else RECONNECT_PAUSE
                        if time.monotonic() + pause >= deadline:
                            break
                        await asyncio.sleep(pause)
        except TimeoutError:
            pass
        except asyncio.CancelledError:
            # Only this task's own budget cancels it (send() shields it). Under load a timeout's
            # cancellation that lands inside redis-py's own cancellation handling can escape
            # `asyncio.timeout` unconverted (Python 3.11): it is the budget running out all the
            # same, and the retraction below says whether the push landed.
            _uncancel()
        except (RedisError, OSError) as exc:
            reason = unreachable(exc)
        return await self._retract(job, message, reason)

    async def _retract(self, job: Job, message: bytes, reason: str) -> str | SendResult:
        """Make sure a push that failed is either queued (a worker has it) or never will be."""
        args = retract_args(job, message, reason)
        try:
            async with asyncio.timeout(retract_budget(self._enqueue_timeout)):
                while True:
                    try:
                        reply = await self._redis.eval(RETRACT, 3, *args)
                        return after_retract(job, reply, reason)
                    except (RedisConnectionError, RedisTimeoutError):
                        await asyncio.sleep(RECONNECT_PAUSE)
        except asyncio.CancelledError:  # the retraction's own budget, as in the push above
            _uncancel()
            return not_queued(job, reason + UNCONFIRMED)
        except (TimeoutError, RedisError, OSError):
            return not_queued(job, reason + UNCONFIRMED)

    async def enqueue(self, job: Job, message: bytes | None = None) -> str | None:
        """Push the job (`message`: its task message, built when not given) and its `queued` event
        in one fenced Lua call; returns the `queued` event's stream id, after which the job's other
        events come, or None when the job was retracted before."""
        args = enqueue_args(job, message or task_message(job))
        try:
            reply = await self._batcher.call("EVALSHA", ENQUEUE_SHA, 3, *args)
        except NoScriptError:  # a restarted or flushed Redis: EVAL caches the script again
            reply = await self._batcher.call("EVAL", ENQUEUE, 3, *args)
        return enqueue_answer(reply)

    async def wait(self, job: Job, *, timeout: float, since: str = "0-0") -> SendResult:
        """The job's outcome from its call's result channel, or `pending` after `timeout`.

        `since` is a stream id the job's events come after (its `queued` event's, from `enqueue`);
        the default reads the call's channel from the start. The wait goes through the client's
        one reader (`producers/reader.py`); Redis going away meanwhile (a restart, a failover) is
        bridged by the reader, and the events are in the stream, so none is missed. Past the
        deadline: `pending`.
        """
        seen: list[Event] = []
        deadline = time.monotonic() + max(timeout, 0.0)
        if timeout <= 0:
            return SendResult.from_events(job, seen)
        sub = self._reader.subscribe(events_key(job.call.call_id), since)
        try:
            while (remaining := deadline - time.monotonic()) > 0:
                for _, event in await sub.next(remaining):
                    if event.job_id == job.job_id:
                        seen.append(event)
                        if event.terminal:
                            return SendResult.from_events(job, seen)
        finally:
            self._reader.unsubscribe(sub)
        return SendResult.from_events(job, seen)

    async def wait_delivery(
        self, result_or_job_id: SendResult | str, *, call_id: str | None = None, timeout: float = 10.0
    ) -> DeliveryResult:
        """Wait up to `timeout` seconds for the SMS's receipt: `delivered`, `undelivered`,
        `unconfirmed` (each returned as soon as it is on the call's channel), else what is known
        by then: `sent`, or `unknown`. Never raises for Redis trouble: it keeps reading until the
        timeout, and a result with no receipt is `unknown`.
        """
        job_id, call_id = delivery_target(result_or_job_id, call_id)
        seen: list[Event] = []
        deadline = time.monotonic() + max(timeout, 0.0)
        key = events_key(call_id)
        sub = self._reader.subscribe(key)
        try:
            while (remaining := deadline - time.monotonic()) > 0:
                found = [e for _, e in await sub.next(remaining) if DeliveryResult.relevant(job_id, e)]
                if found:
                    seen.extend(found)
                    if DeliveryResult.settled_by(job_id, seen):
                        return DeliveryResult.from_events(job_id, seen)
            # The last look, without blocking (all of it when timeout=0): what is on the stream now.
            try:
                async with asyncio.timeout(_GRACE):
                    reply = await self._redis.xread({key: sub.last_id})
            except (TimeoutError, RedisError, OSError):
                reply = None
            looked = parse_entries(reply_entries(reply))
            seen.extend(e for _, e in looked if DeliveryResult.relevant(job_id, e))
        finally:
            self._reader.unsubscribe(sub)
        return DeliveryResult.from_events(job_id, seen)

    async def events(
        self, call_id: str, *, since: str = "0-0", idle_timeout: float | None = None
    ) -> AsyncIterator[Event]:
        """Every event of the call from `since`, including late ones (delivered, undelivered).

        Runs until the caller stops iterating, or until no event came for `idle_timeout` seconds
        (counted from the client's first read of the stream, which comes back at once with what
        is already there).
        """
        sub = self._reader.subscribe(events_key(call_id), since)
        started = time.monotonic()
        idle_deadline: float | None = None
        try:
            while True:
                now = time.monotonic()
                if idle_timeout is None:
                    wait = MAX_BLOCK
                else:
                    if idle_deadline is None and (sub.read or now - started > MAX_BLOCK + _GRACE):
                        idle_deadline = now + idle_timeout
                    wait = MAX_BLOCK + _GRACE if idle_deadline is None else idle_deadline - now
                    if wait <= 0:
                        return
                entries = await sub.next(wait)
                for _, event in entries:
                    yield event
                if entries and idle_timeout is not None:
                    idle_deadline = time.monotonic() + idle_timeout
        finally:
            self._reader.unsubscribe(sub)


def _uncancel() -> None:
    """Forget a cancellation this task absorbed, so its later `asyncio.timeout`s work."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        task.uncancel()
