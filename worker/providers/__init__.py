"""Providers, one module each behind `SmsProvider`, and the per-process pool that reuses them.

A provider (and its HTTP connection pool) is built once per connection and worker process and
reused for every message (keep-alive); a changed connection gets a new one.
"""

from __future__ import annotations

import hashlib
import json
import threading

import httpx
import redis

from worker.config.models import Connection
from worker.providers.base import OutboundSms, Receipt, SmsProvider
from worker.providers.custom import CustomProvider
from worker.providers.plivo import PlivoProvider
from worker.providers.sandbox import SandboxProvider
from worker.providers.telnyx import TelnyxProvider
from worker.providers.twilio import TwilioProvider
from worker.settings import Settings

__all__ = ["OutboundSms", "ProviderPool", "Receipt", "SmsProvider"]


def fingerprint(connection: Connection) -> str:
    """Identifies a connection's effective settings, secrets included (hashed, never shown)."""
    data = connection.model_dump(mode="python")
    data["credentials"] = {k: v.get_secret_value() for k, v in connection.credentials.items()}
    data["custom_api_headers"] = {k: v.get_secret_value() for k, v in connection.custom_api_headers.items()}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


class ProviderPool:
    """Providers by connection, built on first use and reused (thread-safe)."""

    def __init__(self, settings: Settings, client: redis.Redis) -> None:
        self._settings = settings
        self._redis = client
        self._lock = threading.Lock()
        self._providers: dict[str, SmsProvider] = {}
        self._http: httpx.Client | None = None

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
        return provider

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
                http=self.http(),
                allow_private=self._settings.allow_private_endpoints,
            )
        if connection.provider == "plivo":
            return PlivoProvider(connection, http=self.http())
        if connection.provider == "telnyx":
            return TelnyxProvider(connection, http=self.http())
        return SandboxProvider(self._redis)

    def close(self) -> None:
        with self._lock:
            for provider in self._providers.values():
                provider.close()
            self._providers.clear()
            if self._http is not None:
                self._http.close()
                self._http = None
