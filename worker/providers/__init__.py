"""Providers, one module each behind `SmsProvider`, their registry, and the per-process pool.

Which providers exist is `worker/provider_specs.py`; `worker/providers/registry.py` loads each
one's class, and everything else reaches a provider through it (docs/architecture.md).

A provider (and its HTTP connection pool) is built once per connection and worker process and
reused for every message (keep-alive); a changed connection gets a new one.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time

import httpx
import redis

from worker.config.models import Connection
from worker.providers.base import OutboundSms, ProviderResources, Receipt, SmsProvider
from worker.providers.pinning import PinnedBackend, PinnedResolver, PinnedTransport
from worker.providers.registry import (
    CALLBACK_PROVIDERS,
    PROVIDER_CLASSES,
    RECEIPT_PROVIDERS,
    provider_class,
    receipt_parser,
)
from worker.settings import Settings

__all__ = [
    "CALLBACK_PROVIDERS",
    "PROVIDER_CLASSES",
    "RECEIPT_PROVIDERS",
    "OutboundSms",
    "ProviderPool",
    "ProviderResources",
    "Receipt",
    "SmsProvider",
    "provider_class",
    "receipt_parser",
]


def fingerprint(connection: Connection) -> str:
    """Identifies a connection's effective settings, secrets included (hashed, never shown)."""
    data = connection.model_dump(mode="python")
    data["credentials"] = {k: v.get_secret_value() for k, v in connection.credentials.items()}
    data["custom_api_headers"] = {k: v.get_secret_value() for k, v in connection.custom_api_headers.items()}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


#: Connection objects whose fingerprint a pool keeps (see `ProviderPool._fingerprint`).
_FINGERPRINTS_KEPT = 256
#: Seconds a replaced provider stays open, so sends already using it can finish.
RETIRE_AFTER = 120.0


class ProviderPool:
    """Providers by connection, built on first use and reused (thread-safe); the
    `ProviderResources` each provider's `build` takes (the shared httpx clients, Redis, settings).

    When a connection's settings change (a live config change), the new settings get a new
    provider and the old one is closed a while later, so a long-lived worker does not collect
    open sessions.
    """

    def __init__(self, settings: Settings, client: redis.Redis) -> None:
        self._settings = settings
        self._redis = client
        self._lock = threading.Lock()
        self._providers: dict[str, SmsProvider] = {}
        self._fingerprint_of_label: dict[str, str] = {}
        #: id(connection) -> (the connection, kept so its id is not reused; its fingerprint)
        self._fingerprint_of_object: dict[int, tuple[Connection, str]] = {}
        self._retired: list[tuple[float, SmsProvider]] = []
        self._http: httpx.Client | None = None
        self._pinned_http: httpx.Client | None = None
        self._resolver = PinnedResolver(ttl=settings.custom_dns_ttl)

    @property
    def settings(self) -> Settings:
        return self._settings

    @property
    def redis(self) -> redis.Redis:
        return self._redis

    def http(self) -> httpx.Client:
        """One httpx client for every httpx-based provider of this process."""
        if self._http is None:
            limit = self._settings.concurrency
            self._http = httpx.Client(
                timeout=httpx.Timeout(
                    self._settings.provider_timeout, connect=min(2.0, self._settings.provider_timeout)
                ),
                limits=httpx.Limits(max_connections=limit, max_keepalive_connections=limit),
                follow_redirects=False,
                trust_env=False,
            )
        return self._http

    def pinned_http(self) -> httpx.Client:
        """The httpx client of custom endpoints: connections only to checked, pinned addresses."""
        if self._pinned_http is None:
            limit = self._settings.concurrency
            backend = PinnedBackend(self._resolver, allow_private=self._settings.allow_private_endpoints)
            self._pinned_http = httpx.Client(
                transport=PinnedTransport(
                    backend, limits=httpx.Limits(max_connections=limit, max_keepalive_connections=limit)
                ),
                timeout=httpx.Timeout(
                    self._settings.provider_timeout, connect=min(2.0, self._settings.provider_timeout)
                ),
                follow_redirects=False,
                trust_env=False,
            )
        return self._pinned_http

    def get(self, connection: Connection) -> SmsProvider:
        key = self._fingerprint(connection)
        provider = self._providers.get(key)
        if provider is not None:
            return provider
        with self._lock:
            provider = self._providers.get(key)
            if provider is None:
                provider = self._build(connection)
                self._providers[key] = provider
                self._retire(connection.label, key)
        return provider

    def _fingerprint(self, connection: Connection) -> str:
        """`fingerprint(connection)`, computed once per connection object: a config's connections
        are built when it is loaded and replaced, never changed, by a reload (a dump, a JSON
        encoding and a SHA-256 per send otherwise). Bounded: plans build a custom endpoint's
        connection per job."""
        seen = self._fingerprint_of_object.get(id(connection))
        if seen is not None and seen[0] is connection:
            return seen[1]
        key = fingerprint(connection)
        if len(self._fingerprint_of_object) >= _FINGERPRINTS_KEPT:
            self._fingerprint_of_object.clear()
        self._fingerprint_of_object[id(connection)] = (connection, key)
        return key

    def _retire(self, label: str, key: str) -> None:
        """Called holding the lock: the label now means `key`; retire what it meant before and
        close providers retired long enough ago."""
        now = time.monotonic()
        previous = self._fingerprint_of_label.get(label)
        self._fingerprint_of_label[label] = key
        if previous is not None and previous != key:
            old = self._providers.pop(previous, None)
            if old is not None:
                self._retired.append((now, old))
        keep: list[tuple[float, SmsProvider]] = []
        for retired_at, old in self._retired:
            if now - retired_at >= RETIRE_AFTER:
                old.close()
            else:
                keep.append((retired_at, old))
        self._retired = keep

    def _build(self, connection: Connection) -> SmsProvider:
        return provider_class(connection.provider).build(connection, self)

    def close(self) -> None:
        with self._lock:
            for provider in [*self._providers.values(), *(old for _, old in self._retired)]:
                provider.close()
            self._providers.clear()
            self._retired.clear()
            for client in (self._http, self._pinned_http):
                if client is not None:
                    client.close()
            self._http = None
            self._pinned_http = None
