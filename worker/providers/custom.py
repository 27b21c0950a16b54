"""A custom HTTPS endpoint: `POST custom_api_url` with JSON `{"to", "message"}`; any 2xx is acceptance.

The endpoint is the platform user's, so it is treated as untrusted (DESIGN 7): HTTPS only, no
redirects, a bounded response, and no loopback, private or link-local address — unless
`SMS_ALLOW_PRIVATE_ENDPOINTS` (tests, on-premise gateways). Addresses are checked on every send,
after DNS resolution. A resolver that answers differently between our check and httpx's own
lookup (DNS rebinding) is not covered; pinning the address would need a custom transport.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from typing import ClassVar
from urllib.parse import urlsplit

import httpx

from producers.contract import ErrorCode
from worker.config.models import Connection
from worker.errors import SendError
from worker.providers.base import (
    OutboundSms,
    Receipt,
    SmsProvider,
    map_transport_errors,
    retry_after_seconds,
    status_error,
)
from worker.providers.numbers import NotSupported, NumberListing

#: The most bytes read from an endpoint's answer; the rest is ignored.
MAX_RESPONSE_BYTES = 64 * 1024


def check_endpoint(url: str, *, allow_private: bool) -> None:
    """Refuse a URL we must not call; raises `SendError(sender_invalid)` naming the reason."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise SendError(
            ErrorCode.SENDER_INVALID,
            "custom_api_url must be an absolute https:// URL",
            cause="custom_endpoint",
        )
    if parts.scheme != "https" and not allow_private:
        raise SendError(ErrorCode.SENDER_INVALID, "custom_api_url must use https", cause="custom_endpoint")
    if allow_private:
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise SendError(ErrorCode.PROVIDER_UNAVAILABLE, "cannot resolve the custom endpoint's host") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise SendError(
                ErrorCode.SENDER_INVALID,
                "custom_api_url resolves to a loopback, private or link-local address "
                "(set SMS_ALLOW_PRIVATE_ENDPOINTS=true to allow it)",
                cause="custom_endpoint",
            )


class CustomProvider(SmsProvider):
    name: ClassVar[str] = "custom"

    @classmethod
    def check_credentials(cls, connection: Connection, *, http: httpx.Client, timeout: float) -> str:
        raise NotSupported("a custom endpoint has no request that sends nothing")

    @classmethod
    def list_numbers(cls, connection: Connection, *, http: httpx.Client, timeout: float) -> NumberListing:
        raise NotSupported("a custom endpoint has no list of numbers: it sends from whatever number it uses")

    @classmethod
    def requires_sender(cls, connection: Connection) -> bool:
        return False

    def __init__(self, url: str, headers: dict[str, str], *, http: httpx.Client, allow_private: bool) -> None:
        self._url = url
        self._headers = headers
        self._http = http
        self._allow_private = allow_private

    def _send(self, sms: OutboundSms) -> Receipt:
        check_endpoint(self._url, allow_private=self._allow_private)
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
