"""What one service process holds: its settings, one Redis client, the config source, metrics.

The config is read like the worker reads it (`worker.config.source`): cached in the process and
refreshed when the file or the store changes, within `SMS_CONFIG_REFRESH` seconds. With the Redis
store, a service started while Redis is down opens the source on the first request that needs it
(until then such requests answer 503); a bad config file at start-up is fatal, as for the worker.
"""

from __future__ import annotations

import contextlib
import threading

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from worker import redis_client
from worker.config.models import SmsConfig
from worker.config.source import ConfigSource, open_source
from worker.http.metrics import ServiceMetrics
from worker.settings import Settings

#: threads that run the service's Redis calls (anyio's default limiter is 40)
REDIS_THREADS = 40


def service_client(settings: Settings) -> redis.Redis:
    """Redis for request handling: fails within two seconds and does not retry on its own, so a
    request answers 503 (and the provider retries) instead of hanging while Redis is away."""
    return redis_client.connect(
        settings,
        max_connections=REDIS_THREADS + 8,
        socket_connect_timeout=1.0,
        socket_timeout=2.0,
        socket_keepalive=True,
        health_check_interval=10,
        retry=Retry(NoBackoff(), 1),  # one immediate retry: a pooled connection Redis has closed
    )


class ServiceState:
    """Per-process state, built by the app's lifespan (or given by a test)."""

    def __init__(
        self,
        settings: Settings,
        client: redis.Redis,
        *,
        config: ConfigSource | None = None,
        metrics: ServiceMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.redis = client
        self.metrics = metrics or ServiceMetrics()
        self.stopping = False
        self._tokens = [t.encode() for t in settings.bearer_tokens()]
        self._source = config
        self._lock = threading.Lock()
        if self._source is None:
            # The Redis store while Redis is down: opened by the first request that needs it.
            with contextlib.suppress(redis.RedisError):
                self._source = open_source(settings, client)

    @property
    def tokens(self) -> list[bytes]:
        """The audit API's bearer tokens (`SMS_API_TOKENS`)."""
        return self._tokens

    def config(self) -> SmsConfig:
        """The current config (blocking: may read Redis; call it from a worker thread).
        Raises `redis.RedisError` when the Redis store cannot be opened."""
        source = self._source
        if source is None:
            with self._lock:
                if self._source is None:
                    self._source = open_source(self.settings, self.redis)
                source = self._source
        return source.get()

    def public_url(self, path: str, query: str) -> str | None:
        """The URL a provider called, as it called it: `SMS_PUBLIC_URL` + path (+ `?` query), never
        the Host header the service saw behind a proxy. None when `SMS_PUBLIC_URL` is not set."""
        base = self.settings.public_url
        if not base:
            return None
        return base.rstrip("/") + path + (f"?{query}" if query else "")

    def close(self) -> None:
        redis_client.close(self.redis)
