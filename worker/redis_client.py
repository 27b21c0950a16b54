"""The worker side's Redis clients, all built from `SMS_REDIS_URL` (plain or Sentinel).

`connect` is the one function that makes a redis-py client for the worker's state, its probes,
the CLI and the HTTP service; `broker` gives Celery the same URL in kombu's form with the
transport options it needs. The URL's forms are described in `producers/redis_url.py`.
"""

from __future__ import annotations

from typing import Any

import redis

from producers.redis_url import close_sync, is_sentinel_url, parse_sentinel_url, redacted, sync_client
from worker.settings import Settings

__all__ = ["broker", "close", "connect", "redacted"]


def connect(settings: Settings, **options: Any) -> redis.Redis:
    """A client on `SMS_REDIS_URL`; `options` go to its connections (timeouts, pool size, …)."""
    return sync_client(settings.redis_url, **options)


def close(client: redis.Redis) -> None:
    """Close a client from `connect` (and its connections to the sentinels)."""
    close_sync(client)


def broker(settings: Settings) -> tuple[str, dict[str, Any]]:
    """Celery's broker URL and the transport options the URL itself implies.

    Sentinel: kombu's `sentinel://…;sentinel://…/db` and `master_name` (+ `sentinel_kwargs` when
    the sentinels need a password); kombu's Sentinel transport asks the sentinels for the master
    on every (re)connection, and `broker_channel_error_retry` (app.py) makes a `READONLY` answer
    from a demoted master a reason to reconnect rather than a crash.
    """
    if not is_sentinel_url(settings.redis_url):
        return settings.redis_url, {}
    parsed = parse_sentinel_url(settings.redis_url)
    options: dict[str, Any] = {"master_name": parsed.master_name}
    kwargs = {k: v for k, v in parsed.sentinel_kwargs().items() if k in ("password", "username")}
    if kwargs:
        options["sentinel_kwargs"] = kwargs
    return parsed.kombu_url(), options
