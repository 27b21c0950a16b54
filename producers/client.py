"""`SmsClient`: what a live-call process (asyncio) uses to text the caller and hear the outcome."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import Any, Self

from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import RedisError

from producers.channel import (
    TTL,
    XADD_OPTIONS,
    absorb,
    parse_entries,
    queued_event,
    reply_entries,
    stream_id,
    xadd_args,
)
from producers.contract import (
    QUEUE,
    CallContext,
    ErrorCode,
    ErrorInfo,
    Event,
    Job,
    Status,
    VariableValue,
    events_key,
    tool_message,
)
from producers.envelope import task_message
from producers.jobs import DEFAULT_EXPIRES_IN, build_job
from producers.results import SendResult

#: Connections per client: one per send awaiting its outcome, plus enqueues.
MAX_CONNECTIONS = 2000
#: The longest single blocking read, in seconds: below redis-py's default 5 s socket timeout,
#: which then still catches a Redis that went silent.
MAX_BLOCK = 2.0
#: Seconds between attempts to read again after Redis dropped the connection.
RECONNECT_PAUSE = 0.1
#: Extra seconds allowed past a blocking read's own timeout before the client gives up on Redis.
_GRACE = 0.5


def queue_unavailable(job: Job, exc: BaseException) -> SendResult:
    """The result when the job could not be queued at all: nothing was or will be sent."""
    error = ErrorInfo(
        code=ErrorCode.PROVIDER_UNAVAILABLE,
        message=f"the SMS queue (Redis) is unreachable: {type(exc).__name__}",
        retryable=True,
    )
    return SendResult(
        job_id=job.job_id,
        status="failed",
        tool_message=tool_message(Status.FAILED, ErrorCode.PROVIDER_UNAVAILABLE),
        error=error,
    )


class SmsClient:
    """Sends SMS through the worker fleet and waits for the outcome, never blocking the event loop.

    ```python
    async with SmsClient.from_url("redis://localhost:6379/0") as sms:
        result = await sms.send(agent_id="agent_abc123", call=call, template="booking_confirmation",
                                variables={...}, idempotency_key=f"{call.call_id}:{tool_call_id}")
    ```
    `send()` raises only for bad arguments; every SMS outcome, including "Redis is down", is a result.
    """

    def __init__(self, redis: Redis, *, owns_redis: bool = False) -> None:
        self._redis = redis
        self._owns_redis = owns_redis

    @classmethod
    def from_url(cls, url: str, *, max_connections: int = MAX_CONNECTIONS, **redis_options: Any) -> Self:
        """A client with its own connection pool; `redis_options` go to the pool's connections.

        Each send waiting for its outcome holds one connection (a blocking XREAD), so the pool
        is large and blocking: past `max_connections` a send waits for a free connection
        (within its own timeout) instead of failing.
        """
        options: dict[str, Any] = {"socket_connect_timeout": 1.0, "socket_keepalive": True}
        options.update(redis_options)
        pool = BlockingConnectionPool.from_url(url, max_connections=max_connections, timeout=None, **options)
        return cls(Redis(connection_pool=pool), owns_redis=True)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_redis:
            await self._redis.aclose()
            await self._redis.connection_pool.disconnect()

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

        Returns `accepted`, `failed`, or `pending` when no outcome came in time (the job stays
        queued and is still sent before `expires_in`).
        """
        job = build_job(
            agent_id=agent_id, call=call, template=template, variables=variables, message=message,
            to=to, from_=from_, connection=connection, idempotency_key=idempotency_key,
            expires_in=expires_in,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        try:
            async with asyncio.timeout(timeout):
                queued_id = await self.enqueue(job)
        except TimeoutError:
            # Whether the push landed is unknown: if it did, a worker sends it.
            return SendResult.from_events(job, [])
        except (RedisError, OSError) as exc:
            return queue_unavailable(job, exc)
        return await self.wait(job, timeout=deadline - time.monotonic(), since=queued_id)

    async def enqueue(self, job: Job) -> str:
        """Push the job and its `queued` event in one round trip (a MULTI/EXEC pipeline); returns
        the `queued` event's stream id, after which the job's other events come."""
        key, fields = xadd_args(queued_event(job))
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xadd(key, fields, **XADD_OPTIONS)  # type: ignore[arg-type]
            pipe.expire(key, TTL)
            pipe.lpush(QUEUE, task_message(job))
            results = await pipe.execute()
        return stream_id(results[0])

    async def wait(self, job: Job, *, timeout: float, since: str = "0-0") -> SendResult:
        """The job's outcome from its call's result channel, or `pending` after `timeout`.

        `since` is a stream id the job's events come after (its `queued` event's, from `enqueue`);
        the default reads the call's channel from the start.
        """
        seen: list[Event] = []
        last_id = since
        deadline = time.monotonic() + max(timeout, 0.0)
        key = events_key(job.call.call_id)
        while (remaining := deadline - time.monotonic()) > 0:
            block = min(remaining, MAX_BLOCK)
            try:
                async with asyncio.timeout(block + _GRACE):
                    reply = await self._redis.xread({key: last_id}, block=max(int(block * 1000), 1))
            except (TimeoutError, RedisError, OSError):
                # Redis went away (a restart, a failover): try again until our own deadline; the
                # events are in the stream, so none is missed. Past the deadline: pending.
                await asyncio.sleep(min(RECONNECT_PAUSE, max(deadline - time.monotonic(), 0)))
                continue
            last_id, done = absorb(job.job_id, reply, seen, last_id)
            if done:
                break
        return SendResult.from_events(job, seen)

    async def events(
        self, call_id: str, *, since: str = "0-0", idle_timeout: float | None = None
    ) -> AsyncIterator[Event]:
        """Every event of the call from `since`, including late ones (delivered, undelivered).

        Runs until the caller stops iterating, or until no event came for `idle_timeout` seconds.
        """
        key = events_key(call_id)
        last_id = since
        idle_deadline = None if idle_timeout is None else time.monotonic() + idle_timeout
        while True:
            block = MAX_BLOCK if idle_deadline is None else min(MAX_BLOCK, idle_deadline - time.monotonic())
            if block <= 0:
                return
            async with asyncio.timeout(block + _GRACE):
                reply = await self._redis.xread({key: last_id}, block=max(int(block * 1000), 1))
            entries = parse_entries(reply_entries(reply))
            for entry_id, event in entries:
                last_id = entry_id
                yield event
            if entries and idle_timeout is not None:
                idle_deadline = time.monotonic() + idle_timeout
