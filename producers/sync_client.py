"""`SyncSmsClient`: the same as `SmsClient`, for code without an event loop."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import Any, Self

from redis import Redis
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
from producers.client import MAX_BLOCK, RECONNECT_PAUSE, queue_unavailable
from producers.contract import QUEUE, CallContext, Event, Job, VariableValue, events_key
from producers.envelope import task_message
from producers.jobs import DEFAULT_EXPIRES_IN, build_job
from producers.results import SendResult


class SyncSmsClient:
    """Blocking twin of `SmsClient`: `send()` returns `accepted`, `failed` or `pending`."""

    def __init__(self, redis: Redis, *, owns_redis: bool = False) -> None:
        self._redis = redis
        self._owns_redis = owns_redis

    @classmethod
    def from_url(cls, url: str, **redis_options: Any) -> Self:
        options: dict[str, Any] = {"socket_connect_timeout": 1.0, "socket_keepalive": True}
        options.update(redis_options)
        return cls(Redis.from_url(url, **options), owns_redis=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_redis:
            self._redis.close()

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
        """Queue one SMS and wait up to `timeout` seconds for its outcome (see `SmsClient.send`)."""
        job = build_job(
            agent_id=agent_id, call=call, template=template, variables=variables, message=message,
            to=to, from_=from_, connection=connection, idempotency_key=idempotency_key,
            expires_in=expires_in,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        try:
            queued_id = self.enqueue(job)
        except (RedisError, OSError) as exc:
            return queue_unavailable(job, exc)
        return self.wait(job, timeout=deadline - time.monotonic(), since=queued_id)

    def enqueue(self, job: Job) -> str:
        """Push the job and its `queued` event in one round trip; returns the event's stream id."""
        key, fields = xadd_args(queued_event(job))
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.xadd(key, fields, **XADD_OPTIONS)  # type: ignore[arg-type]
            pipe.expire(key, TTL)
            pipe.lpush(QUEUE, task_message(job))
            results = pipe.execute()
        return stream_id(results[0])

    def wait(self, job: Job, *, timeout: float, since: str = "0-0") -> SendResult:
        """The job's outcome, or `pending` after `timeout` (see `SmsClient.wait`)."""
        seen: list[Event] = []
        last_id = since
        deadline = time.monotonic() + max(timeout, 0.0)
        key = events_key(job.call.call_id)
        while (remaining := deadline - time.monotonic()) > 0:
            block = min(remaining, MAX_BLOCK)
            try:
                reply = self._redis.xread({key: last_id}, block=max(int(block * 1000), 1))
            except (RedisError, OSError):
                # Redis went away: try again until our own deadline (see SmsClient.wait).
                time.sleep(min(RECONNECT_PAUSE, max(deadline - time.monotonic(), 0)))
                continue
            last_id, done = absorb(job.job_id, reply, seen, last_id)
            if done:
                break
        return SendResult.from_events(job, seen)

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
            reply = self._redis.xread({key: last_id}, block=max(int(block * 1000), 1))
            entries = parse_entries(reply_entries(reply))
            for entry_id, event in entries:
                last_id = entry_id
                yield event
            if entries and idle_timeout is not None:
                idle_deadline = time.monotonic() + idle_timeout
