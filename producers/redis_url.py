"""Redis clients from a URL, plain or Sentinel — the one place that reads `SMS_REDIS_URL`'s form.

Two forms are accepted:

- `redis://[[user]:password@]host:port/db` (and `rediss://`, `unix://`): one server, as redis-py
  reads it.
- Sentinel, kombu's form with the master's name as a query parameter:
  `sentinel://[[user]:password@]host1:26379;sentinel://host2:26379;sentinel://host3:26379/0?master_name=mymaster`
  — every sentinel as its own `sentinel://host:port`, separated by `;`; the database, the
  credentials (those of the master and replicas, as with kombu) and the query may be on any part.
  Query parameters: `master_name` (required), `sentinel_password` / `sentinel_username` (when the
  sentinels themselves require auth). Clients ask the sentinels for the current master and ask
  again after a connection error or a `READONLY` answer (a demoted master), so a failover needs no
  configuration change.

The worker (broker, state, CLI, HTTP service) and the producers all build their clients here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import redis
import redis.asyncio
import redis.asyncio.sentinel
import redis.sentinel

SENTINEL_SCHEME = "sentinel"
#: Seconds for talking to a sentinel (asking for the master): short, there are others to ask.
SENTINEL_TIMEOUT = 0.5


@dataclass(frozen=True, slots=True)
class SentinelUrl:
    """A parsed Sentinel URL."""

    sentinels: tuple[tuple[str, int], ...]
    master_name: str
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)

    def kombu_url(self) -> str:
        """The broker URL in kombu's form (`sentinel://…;sentinel://…/db`), without the query:
        the master name goes to the transport options."""
        auth = ""
        if self.password is not None:
            auth = f"{self.username or ''}:{self.password}@"
        return ";".join(f"sentinel://{auth}{host}:{port}/{self.db}" for host, port in self.sentinels)

    def sentinel_kwargs(self) -> dict[str, Any]:
        """What the connections to the sentinels themselves get."""
        kwargs: dict[str, Any] = {
            "socket_timeout": SENTINEL_TIMEOUT,
            "socket_connect_timeout": SENTINEL_TIMEOUT,
        }
        if self.sentinel_password is not None:
            kwargs["password"] = self.sentinel_password
        if self.sentinel_username is not None:
            kwargs["username"] = self.sentinel_username
        return kwargs

    def master_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"db": self.db}
        if self.password is not None:
            kwargs["password"] = self.password
        if self.username:
            kwargs["username"] = self.username
        return kwargs


def is_sentinel_url(url: str) -> bool:
    return url.strip().lower().startswith(f"{SENTINEL_SCHEME}://")


def parse_sentinel_url(url: str) -> SentinelUrl:
    """`ValueError` (naming what is wrong, never the password) for a malformed Sentinel URL."""
    sentinels: list[tuple[str, int]] = []
    db = 0
    username = password = None
    query: dict[str, list[str]] = {}
    for part in (p.strip() for p in url.split(";") if p.strip()):
        parts = urlsplit(part)
        if parts.scheme != SENTINEL_SCHEME or not parts.hostname:
            raise ValueError(
                "a Sentinel URL is sentinel://host:port;sentinel://host:port/db?master_name=NAME"
            )
        sentinels.append((parts.hostname, parts.port or 26379))
        if parts.path.strip("/"):
            try:
                db = int(parts.path.strip("/"))
            except ValueError:
                raise ValueError("the Sentinel URL's database must be a number (…/0)") from None
        if parts.password is not None:
            username, password = (
                (unquote(parts.username) if parts.username else None),
                unquote(parts.password),
            )
        for key, values in parse_qs(parts.query).items():
            query.setdefault(key, []).extend(values)
    master = (query.get("master_name") or [""])[-1]
    if not master:
        raise ValueError("a Sentinel URL needs ?master_name=NAME (the name the sentinels monitor)")
    return SentinelUrl(
        sentinels=tuple(sentinels),
        master_name=master,
        db=db,
        username=username,
        password=password,
        sentinel_username=_last(query, "sentinel_username"),
        sentinel_password=_last(query, "sentinel_password"),
    )


def _last(query: dict[str, list[str]], key: str) -> str | None:
    values = query.get(key)
    return values[-1] if values else None


def sync_client(url: str, **options: Any) -> redis.Redis:
    """A redis-py client for `url`; `options` go to its connections (timeouts, pool size, …)."""
    if not is_sentinel_url(url):
        return redis.Redis.from_url(url, **options)
    parsed = parse_sentinel_url(url)
    sentinel = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
        list(parsed.sentinels), sentinel_kwargs=parsed.sentinel_kwargs()
    )
    client: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
        parsed.master_name, **{**parsed.master_kwargs(), **options}
    )
    return client


def async_client(url: str, *, max_connections: int, **options: Any) -> redis.asyncio.Redis:
    """An asyncio client for `url`: on a blocking pool of `max_connections` (a send waits for a free
    connection) for one server; on redis-py's Sentinel pool, which refuses past the limit, for
    Sentinel."""
    if not is_sentinel_url(url):
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=None, **options
        )
        return redis.asyncio.Redis(connection_pool=pool)
    parsed = parse_sentinel_url(url)
    sentinel = redis.asyncio.sentinel.Sentinel(  # type: ignore[no-untyped-call]
        list(parsed.sentinels), sentinel_kwargs=parsed.sentinel_kwargs()
    )
    client: redis.asyncio.Redis = sentinel.master_for(
        parsed.master_name, max_connections=max_connections, **{**parsed.master_kwargs(), **options}
    )
    return client


def _sentinel_clients(client: redis.Redis | redis.asyncio.Redis) -> list[Any]:
    manager = getattr(client.connection_pool, "sentinel_manager", None)
    return list(getattr(manager, "sentinels", []))


def close_sync(client: redis.Redis) -> None:
    """Close `client` and, for Sentinel, its connections to the sentinels."""
    client.close()
    client.connection_pool.disconnect()
    for sentinel in _sentinel_clients(client):
        sentinel.close()


async def close_async(client: redis.asyncio.Redis) -> None:
    """Close `client` and, for Sentinel, its connections to the sentinels."""
    await client.aclose()
    await client.connection_pool.disconnect()
    for sentinel in _sentinel_clients(client):
        await sentinel.aclose()


def redacted(url: str) -> str:
    """`url` without user names and passwords (every part of a Sentinel URL), fit for a message."""
    shown = []
    for part in url.split(";"):
        parts = urlsplit(part.strip())
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        query = "&".join(q for q in parts.query.split("&") if q and not q.startswith("sentinel_password="))
        shown.append(parts._replace(netloc=netloc, query=query).geturl())
    return ";".join(shown)
