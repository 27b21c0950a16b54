"""The batcher (`producers/batch.py`): commands of one loop turn share one write on one
connection, each caller gets its own reply or error, and a lost connection fails only its batch."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis
from redis.asyncio import Redis
from redis.asyncio.connection import Connection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from producers.batch import Batcher, pack


def test_pack_writes_what_redis_py_writes() -> None:
    """The C packer's bytes are redis-py's own for text, bytes, integers and non-ASCII text."""
    conn = Connection()
    commands = [("SET", "k", b"\x00\xffv"), ("XADD", "s", "MAXLEN", 1, "*", "f", "é ☎"), ("PING",)]
    assert pack(conn, commands) == b"".join(conn.pack_commands(commands))
    assert pack(conn, commands[:1]) == b"".join(conn.pack_command(*commands[0]))


async def test_one_turns_commands_go_in_one_batch_each_with_its_own_answer(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """Three commands submitted together: one write; a command's own error (WRONGTYPE) goes to its
    caller only, and the others get their replies."""
    client = Redis.from_url(redis_url)
    batcher = Batcher(client, timeout=2)
    redis_client.set("sms:test:str", "x")
    try:
        answers: tuple[Any, ...] = await asyncio.gather(
            batcher.call("SET", "sms:test:a", "1"),
            batcher.call("LPUSH", "sms:test:str", "y"),
            batcher.call("ECHO", "hi"),
            return_exceptions=True,
        )
    finally:
        await batcher.aclose()
        await client.aclose()
    ok, wrong, echo = answers
    assert ok is True or ok == b"OK"
    assert isinstance(wrong, ResponseError) and "WRONGTYPE" in str(wrong)
    assert echo == b"hi"


async def test_a_killed_connection_fails_its_batch_and_the_next_one_reconnects(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """Redis closes the batcher's connection (CLIENT KILL): the commands in flight fail with a
    ConnectionError (which the enqueue tries again), and the next batch works on a new one."""
    client = Redis.from_url(redis_url, client_name="batcher-under-test")
    batcher = Batcher(client, timeout=2)
    try:
        assert await batcher.call("ECHO", "first") == b"first"
        redis_client.client_kill_filter(_type="normal", skipme=True)
        with pytest.raises(RedisConnectionError):
            await batcher.call("ECHO", "lost")
        assert await batcher.call("ECHO", "again") == b"again"
    finally:
        await batcher.aclose()
        await client.aclose()
