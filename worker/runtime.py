"""The per-process objects a worker builds once: Redis client, config source, providers, service.

Built lazily on the first task (after a prefork child is forked), closed at process shutdown.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import redis

from worker import redis_client
from worker.config.source import open_source
from worker.polling import ReceiptPoller
from worker.providers import ProviderPool
from worker.service import SmsService
from worker.settings import Settings


@dataclass
class Runtime:
    settings: Settings
    redis: redis.Redis
    providers: ProviderPool
    service: SmsService
    poller: ReceiptPoller

    def close(self) -> None:
        self.providers.close()
        redis_client.close(self.redis)


_lock = threading.Lock()
_runtime: Runtime | None = None


def build(settings: Settings) -> Runtime:
    client = redis_client.connect(
        settings,
        max_connections=settings.concurrency + 16,
        socket_keepalive=True,
        socket_connect_timeout=2.0,
        health_check_interval=10,
    )
    config = open_source(settings, client)
    providers = ProviderPool(settings, client)
    return Runtime(
        settings,
        client,
        providers,
        SmsService(settings, client, config, providers),
        ReceiptPoller(settings, client, config, providers),
    )


def get(settings: Settings) -> Runtime:
    global _runtime
    if _runtime is None:
        with _lock:
            if _runtime is None:
                _runtime = build(settings)
    return _runtime


def reset() -> None:
    """Forget (and close) this process's runtime: after a fork, or at shutdown."""
    global _runtime
    with _lock:
        if _runtime is not None:
            _runtime.close()
        _runtime = None
