"""One connection for many commands: what the sends of one turn of the event loop write to Redis.

`send()`s that enqueue at the same time (a burst of tool calls, many calls in one process) would
otherwise each take a pooled connection for one round trip, and a pool grows to as many
connections as commands were ever in flight at once. `Batcher` queues each command and writes
everything queued since the previous write as one pipeline (no MULTI: each command stands on
its own, as if sent alone) on one connection it keeps, then hands each caller its own reply (or
its own error). One batch is in flight at a time; commands arriving meanwhile go in the next.
Fewer writes and reads also means less CPU per send.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

Command = tuple[Any, ...]

_hiredis_pack: Callable[[Command], Any] | None
try:  # hiredis, which redis[hiredis] brings, packs a command in C, several times faster
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # pragma: no cover - a redis-py without hiredis
    _hiredis_pack = None


def pack(conn: AbstractConnection, commands: list[Command]) -> bytes | list[bytes]:
    """`commands` in the wire format, ready for `send_packed_command`."""
    if _hiredis_pack is None:
        return conn.pack_commands(commands)
    if len(commands) == 1:
        return bytes(_hiredis_pack(commands[0]))
    return b"".join([_hiredis_pack(command) for command in commands])


class Batcher:
    """Writes queued commands as one pipeline on one kept connection; see the module docstring.

    `timeout` bounds one batch's round trip: past it the connection is dropped and the batch's
    commands fail with redis-py's `TimeoutError` (their callers' own budgets are shorter).
    """

    def __init__(self, redis: Redis, *, timeout: float) -> None:
        self._redis = redis
        self._timeout = timeout
        self._queue: list[tuple[Command, asyncio.Future[Any]]] = []
        self._task: asyncio.Task[None] | None = None
        self._conn: AbstractConnection | None = None

    def submit(self, *command: Any) -> asyncio.Future[Any]:
        """Queue `command`; the future gets its reply (or its error). Cancelling the future before
        the batch is written leaves the command out."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((command, future))
        if self._task is None:
            self._task = asyncio.ensure_future(self._flush())
        return future

    def fire(self, *command: Any) -> None:
        """Queue a command whose answer nobody waits for (its error, if any, is dropped)."""
        self.submit(*command).add_done_callback(_forget)

    async def call(self, *command: Any) -> Any:
        return await self.submit(*command)

    async def aclose(self) -> None:
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await self._redis.connection_pool.release(conn)

    async def _flush(self) -> None:
        try:
            while self._queue:
                batch = [(command, future) for command, future in self._queue if not future.done()]
                self._queue = []
                if batch:
                    await self._write(batch)
        finally:
            self._task = None

    async def _write(self, batch: list[tuple[Command, asyncio.Future[Any]]]) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                if self._conn is None:
                    self._conn = await self._redis.connection_pool.get_connection()  # type: ignore[no-untyped-call]
                conn = self._conn
                await conn.send_packed_command(pack(conn, [command for command, _ in batch]))
                for _, future in batch:
                    try:
                        reply = await conn.read_response()
                    except ResponseError as exc:  # this command's own error; the rest still answer
                        _settle(future, error=exc)
                    else:
                        _settle(future, reply)
        except TimeoutError:
            await self._drop()
            _fail(batch, RedisTimeoutError(f"Redis did not answer within {self._timeout:g} s"))
        except (RedisError, OSError) as exc:
            await self._drop()
            if not isinstance(exc, RedisConnectionError | RedisTimeoutError):
                exc = RedisConnectionError(str(exc))
            _fail(batch, exc)

    async def _drop(self) -> None:
        """Forget a connection whose state is unknown (a reply may be half read)."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.disconnect(nowait=True)
            await self._redis.connection_pool.release(conn)


def _settle(future: asyncio.Future[Any], reply: Any = None, *, error: BaseException | None = None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(reply)


def _fail(batch: list[tuple[Command, asyncio.Future[Any]]], error: BaseException) -> None:
    for _, future in batch:
        _settle(future, error=error)


def _forget(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
