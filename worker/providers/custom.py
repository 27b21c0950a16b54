"""A custom HTTPS endpoint: `POST custom_api_url` with JSON `{"to", "message"}`; any 2xx is acceptance.

The endpoint is the platform user's, so it is treated as untrusted (README, "Config: connections and
agents"): HTTPS only, no redirects, a bounded response, and no loopback, private or link-local address —
unless `SMS_ALLOW_PRIVATE_ENDPOINTS` (tests, on-premise gateways). Addresses are pinned
(`worker/providers/pinning.py`): each new connection takes one cached resolution of the host,
every address of it is checked, and the connection goes to a checked address, so a resolver that
changes its answer (DNS rebinding) cannot send the request anywhere else. TLS still verifies the
URL's host name. `probe_endpoint` (for `midcall-sms config connection test`) runs the same checks
and opens a connection, TLS handshake included, without sending anything.
"""

from __future__ import annotations

import json
import ssl
from typing import ClassVar, Self
from urllib.parse import SplitResult, urlsplit

import httpcore
import httpx

from producers.contract import ErrorCode
from worker.config.models import Connection
from worker.errors import SendError
from worker.provider_specs import SPECS, ProviderSpec
from worker.providers.base import (
    OutboundSms,
    ProviderResources,
    Receipt,
    SmsProvider,
    map_transport_errors,
    retry_after_seconds,
    status_error,
)
from worker.providers.numbers import NotSupported, NumberListing
from worker.providers.pinning import PinnedBackend, PinnedResolver, check_addresses

#: The most bytes read from an endpoint's answer; the rest is ignored.
MAX_RESPONSE_BYTES = 64 * 1024


def check_url(url: str, *, allow_private: bool) -> SplitResult:
    """Refuse a URL we must not call (not absolute, not https); `SendError(sender_invalid)`."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise SendError(
            ErrorCode.SENDER_INVALID,
            "custom_api_url must be an absolute https:// URL",
            cause="custom_endpoint",
        )
    if parts.scheme != "https" and not allow_private:
        raise SendError(ErrorCode.SENDER_INVALID, "custom_api_url must use https", cause="custom_endpoint")
    return parts


def _port(parts: SplitResult) -> int:
    return parts.port or (443 if parts.scheme == "https" else 80)


def check_endpoint(
    url: str, *, allow_private: bool, resolver: PinnedResolver | None = None
) -> tuple[str, ...]:
    """The URL's check and one resolution of its host with every address checked; returns the
    addresses. Raises `SendError` (`sender_invalid`, or `provider_unavailable` when it does not resolve)."""
    parts = check_url(url, allow_private=allow_private)
    assert parts.hostname is not None
    addresses = (resolver or PinnedResolver(ttl=0)).addresses(parts.hostname, _port(parts))
    check_addresses(addresses, allow_private=allow_private)
    return addresses


def probe_endpoint(
    url: str,
    *,
    allow_private: bool,
    timeout: float,
    resolver: PinnedResolver | None = None,
    verify: ssl.SSLContext | bool = True,
) -> str:
    """`config connection test` for a custom endpoint: the send's checks (URL, resolution, every
    address), then a connection to a checked address and, for https, the TLS handshake with the
    host's name; no request is sent. Returns what was checked; raises `SendError`."""
    parts = check_url(url, allow_private=allow_private)
    assert parts.hostname is not None
    backend = PinnedBackend(resolver or PinnedResolver(ttl=0), allow_private=allow_private)
    try:
        stream = backend.connect_tcp(parts.hostname, _port(parts), timeout=timeout)
        try:
            if parts.scheme == "https":
                context = httpx.create_ssl_context(verify=verify, trust_env=False)
                stream = stream.start_tls(context, server_hostname=parts.hostname, timeout=timeout)
        finally:
            stream.close()
    except httpcore.ConnectTimeout:
        raise SendError(
            ErrorCode.PROVIDER_UNAVAILABLE, "timed out connecting to the custom endpoint"
        ) from None
    except (httpcore.ConnectError, httpcore.ReadError, httpcore.WriteError, httpcore.ReadTimeout) as exc:
        if "CERTIFICATE" in str(exc).upper():
            raise SendError(
                ErrorCode.SENDER_INVALID,
                "the custom endpoint's TLS certificate is not valid for its host",
                cause="custom_endpoint",
            ) from None
        raise SendError(ErrorCode.PROVIDER_UNAVAILABLE, "cannot connect to the custom endpoint") from None
    checked = "any address allowed" if allow_private else "public addresses only"
    tls = ", TLS verified" if parts.scheme == "https" else ""
    return f"endpoint reachable ({checked}{tls}); nothing sent"


class CustomProvider(SmsProvider):
    spec: ClassVar[ProviderSpec] = SPECS["custom"]
    name: ClassVar[str] = spec.name

    #: `config connection test` passes SMS_ALLOW_PRIVATE_ENDPOINTS (and, in tests, a resolver)
    checks_endpoint: ClassVar[bool] = True

    @classmethod
    def check_credentials(
        cls,
        connection: Connection,
        *,
        http: httpx.Client,
        timeout: float,
        allow_private: bool = False,
        resolver: PinnedResolver | None = None,
    ) -> str:
        """The send's checks (https, every resolved address public) and a connection to a checked
        address with the TLS handshake; nothing is sent (`probe_endpoint`)."""
        assert connection.custom_api_url is not None  # checked by the model
        return probe_endpoint(
            connection.custom_api_url, allow_private=allow_private, timeout=timeout, resolver=resolver
        )

    @classmethod
    def list_numbers(cls, connection: Connection, *, http: httpx.Client, timeout: float) -> NumberListing:
        raise NotSupported("a custom endpoint has no list of numbers: it sends from whatever number it uses")

    @classmethod
    def requires_sender(cls, connection: Connection) -> bool:
        return False

    @classmethod
    def build(cls, connection: Connection, resources: ProviderResources) -> Self:
        """Through `resources.pinned_http()`: the endpoint's host is the user's, its DNS untrusted."""
        assert connection.custom_api_url is not None  # checked by the model (`endpoint_url`)
        headers = {k: v.get_secret_value() for k, v in connection.custom_api_headers.items()}
        return cls(
            connection.custom_api_url,
            headers,
            http=resources.pinned_http(),
            allow_private=resources.settings.allow_private_endpoints,
        )

    def __init__(self, url: str, headers: dict[str, str], *, http: httpx.Client, allow_private: bool) -> None:
        """`http` must be a client on a `PinnedTransport` (`ProviderPool.pinned_http`)."""
        self._url = url
        self._headers = headers
        self._http = http
        self._allow_private = allow_private

    def _send(self, sms: OutboundSms) -> Receipt:
        # The addresses are checked when a connection is opened (`http` is pinned).
        check_url(self._url, allow_private=self._allow_private)
        with (
            map_transport_errors(),
            self._http.stream(
                "POST",
                self._url,
                json={"to": sms.to, "message": sms.body},
                headers={**self._headers, "Idempotency-Key": sms.idempotency_key},
                follow_redirects=False,
            ) as response,
        ):
            body = _read_bounded(response)
        if 200 <= response.status_code < 300:
            return Receipt(message_id=_message_id(response, body))
        if 300 <= response.status_code < 400:
            raise SendError(
                ErrorCode.PROVIDER_ERROR,
                f"custom endpoint answered a redirect ({response.status_code}); redirects are not followed",
                provider_code=response.status_code,
            )
        raise status_error(
            "custom endpoint",
            response.status_code,
            retry_after=retry_after_seconds(response.headers.get("retry-after")),
        )


def _read_bounded(response: httpx.Response) -> bytes:
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= MAX_RESPONSE_BYTES:
            break
    return b"".join(chunks)[:MAX_RESPONSE_BYTES]


def _message_id(response: httpx.Response, body: bytes) -> str | None:
    """An id from a JSON answer (`id`, `message_id`, `sid`, `uuid`), if the endpoint gives one."""
    if "json" not in response.headers.get("content-type", ""):
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    for key in ("id", "message_id", "sid", "uuid"):
        value = data.get(key)
        if isinstance(value, str | int):
            return str(value)[:200]
    return None
