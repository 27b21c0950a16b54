"""Providers, one module each behind `SmsProvider`, and the per-process pool that reuses them.

A provider (and its HTTP connection pool) is built once per connection and worker process and
reused for every message (keep-alive); a changed connection gets a new one.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable

import httpx
import redis

from worker.config.models import Connection
from worker.providers.base import OutboundSms, Receipt, SmsProvider
from worker.providers.custom import CustomProvider
from worker.providers.pinning import PinnedBackend, PinnedResolver, PinnedTransport
from worker.providers.plivo import PlivoProvider
from worker.providers.sandbox import SandboxProvider
from worker.providers.telnyx import TelnyxProvider
from worker.providers.twilio import TwilioProvider
from worker.receipts import ReceiptUpdate
from worker.settings import Settings

__all__ = ["PROVIDER_CLASSES", "OutboundSms", "ProviderPool", "Receipt", "SmsProvider", "receipt_parser"]

#: Each provider name's class, for what a provider knows without being built (its message
#: limits, default sender rates, error tables, receipt parsing) and the account requests the CLI
#: makes (`check_credentials`, `list_numbers`, `check_sender`).
PROVIDER_CLASSES: dict[str, type[SmsProvider]] = {
    "twilio": TwilioProvider,
    "plivo": PlivoProvider,
    "telnyx": TelnyxProvider,
    "custom": CustomProvider,
    "sandbox": SandboxProvider,
}
#: Providers whose messages have delivery receipts (callbacks and/or status polls).
RECEIPT_PROVIDERS = frozenset({"twilio", "plivo", "telnyx", "sandbox"})


def receipt_parser(provider: str) -> Callable[..., ReceiptUpdate]:
    """`<Provider>.receipt` for a provider name: raw callback fields -> `ReceiptUpdate`
    (`KeyError` for a provider without receipts)."""
    if provider not in RECEIPT_PROVIDERS:
        raise KeyError(provider)
    return PROVIDER_CLASSES[provider].receipt


def fingerprint(connection: Connection) -> str:
    """Identifies a connection's effective settings, secrets included (hashed, never shown)."""
    data = connection.model_dump(mode="python")
    data["credentials"] = {k: v.get_secret_value() for k, v in connection.credentials.items()}
    data["custom_api_headers"] = {k: v.get_secret_value() for k, v in connection.custom_api_headers.items()}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


#: Seconds a replaced provider stays open, so sends already using it can finish.
RETIRE_AFTER = 120.0


class ProviderPool:
    """Providers by connection, built on first use and reused (thread-safe).

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
        self._retired: list[tuple[float, SmsProvider]] = []
        self._http: httpx.Client | None = None
        self._pinned_http: httpx.Client | None = None
        self._resolver = PinnedResolver(ttl=settings.custom_dns_ttl)

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
        key = fingerprint(connection)
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
        timeout = self._settings.provider_timeout
        if connection.provider == "twilio":
            return TwilioProvider(connection, timeout=timeout, pool_size=self._settings.concurrency)
        if connection.provider == "custom":
            assert connection.custom_api_url is not None  # checked by the model
            headers = {k: v.get_secret_value() for k, v in connection.custom_api_headers.items()}
            return CustomProvider(
                connection.custom_api_url,
                headers,
                http=self.pinned_http(),
                allow_private=self._settings.allow_private_endpoints,
            )
        if connection.provider == "plivo":
            return PlivoProvider(connection, http=self.http())
        if connection.provider == "telnyx":
            return TelnyxProvider(connection, http=self.http())
        return SandboxProvider(self._redis)

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
