"""The Twilio SDK's transport on httpx: one pooled, keep-alive `httpx.Client` per connection and process.

The SDK keeps everything it is good at — building each request (URL, form fields, auth, headers),
paging, turning answers into records and non-2xx answers into `TwilioRestException` — and hands
the wire to an `HttpClient`. Its default one (`TwilioHttpClient`) is `requests`: a `Request` and
a `PreparedRequest` per call, the environment's proxy settings merged on every call, and a
connection pool that a threads pool with hundreds of threads outgrows. `HttpxTwilioClient` sends
the same bytes through one thread-safe `httpx.Client` whose pool is sized from the worker's
concurrency, so every thread reuses warm connections.

What the SDK's exceptions drop — the answer's headers, where `Retry-After` lives — is kept per
thread (`last_headers()`), so a 429 can be retried when Twilio asks. httpx's own errors leave
`request()` untouched and are put in the taxonomy in one place, `translate_httpx_error`, with a
row for every exception class httpx defines (a test holds the table to httpx's list).

Only the synchronous `HttpClient` interface is implemented: the worker's sends run on the
threads pool, and the SDK's `*_async` methods (which need an `AsyncHttpClient`) are not used.
"""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import httpx
from twilio.http import HttpClient
from twilio.http.response import Response

from producers.contract import ErrorCode
from worker.errors import SendError

__all__ = ["HTTPX_ERRORS", "HTTPX_ERROR_TYPES", "HttpxTwilioClient", "translate_httpx_error"]

#: seconds to wait for a TCP + TLS connection, at most (the request's own budget when smaller)
CONNECT_TIMEOUT = 2.0

_JSON_TYPES = frozenset({"application/json", "application/scim+json"})
_FORM = "application/x-www-form-urlencoded"


def _timeouts(seconds: float) -> dict[str, float]:
    """httpcore's per-request timeouts: the whole budget for each phase, connecting at most
    `CONNECT_TIMEOUT` (as the project's other provider clients)."""
    return {"connect": min(CONNECT_TIMEOUT, seconds), "read": seconds, "write": seconds, "pool": seconds}


def _pairs(fields: Mapping[str, object] | None) -> list[tuple[str, str]]:
    """Fields as `requests` encodes them: a list value repeats its name, None is left out, every
    other value is `str()`-ed (so the bytes on the wire are the ones the SDK always sent)."""
    pairs: list[tuple[str, str]] = []
    for name, value in (fields or {}).items():
        values = value if isinstance(value, list | tuple) else (value,)
        pairs.extend((name, str(item)) for item in values if item is not None)
    return pairs


class HttpxTwilioClient(HttpClient):  # type: ignore[misc]  # the SDK is untyped
    """`twilio.http.HttpClient` on one httpx connection pool (thread-safe; keep-alive;
    `pool_size` connections, so every worker thread can hold one), remembering each thread's
    last response.

    Requests go straight to the pool's `httpx.HTTPTransport`, without an `httpx.Client` around
    it: the SDK already builds every header (auth, user agent, content type) and never asks for
    redirects, and Twilio sets no cookies, so the client's URL merging, cookie jar and redirect
    handling would only cost CPU on every send."""

    def __init__(self, *, timeout: float, pool_size: int) -> None:
        # The SDK's request logging (URL and headers at INFO) is not repeated here.
        super().__init__(logger=logging.getLogger("twilio.http_client"), is_async=False, timeout=timeout)
        self.transport = httpx.HTTPTransport(
            limits=httpx.Limits(max_connections=pool_size, max_keepalive_connections=pool_size),
            trust_env=False,  # like the project's other provider clients: nothing from the environment
        )
        self._timeouts = _timeouts(timeout)
        self._local = threading.local()
        self._auth_header: tuple[tuple[str, str], str] | None = None

    def request(
        self,
        method: str,
        url: str,
        params: Mapping[str, object] | None = None,
        data: Mapping[str, object] | None = None,
        headers: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        """One request as the SDK describes it; a redirect is returned as it is (the SDK never
        asks to follow one); httpx's exceptions leave as they are."""
        self._local.response = None
        if timeout is not None and timeout <= 0:
            raise ValueError(timeout)
        sent = dict(headers or {})
        if auth is not None:
            sent["Authorization"] = self._basic(auth)
        content: bytes | None = None
        json_body: Any = None
        if sent.get("Content-Type") in _JSON_TYPES:
            json_body = data
        elif data:
            content = urlencode(_pairs(data)).encode()
            sent.setdefault("Content-Type", _FORM)
        request = httpx.Request(
            method.upper(),
            url,
            params=urlencode(_pairs(params)) or None,
            content=content,
            json=json_body,
            headers=sent,
            extensions={"timeout": self._timeouts if timeout is None else _timeouts(timeout)},
        )
        answer = self.transport.handle_request(request)
        try:
            answer.read()
        finally:
            answer.close()
        # A plain dict (names as sent): the SDK copies it with dict() on every answer, which for
        # httpx.Headers costs ~13 us against ~3 us for this. A repeated header keeps its last value.
        answer_headers = {
            name.decode("latin-1"): value.decode("latin-1") for name, value in answer.headers.raw
        }
        response = Response(answer.status_code, answer.text, answer_headers)
        self._local.response = response
        return response

    def _basic(self, auth: tuple[str, str]) -> str:
        # One connection's client sees one account: encode its credentials once, not per request.
        cached = self._auth_header
        if cached is not None and cached[0] == auth:
            return cached[1]
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        header = f"Basic {token}"
        self._auth_header = (auth, header)
        return header

    def last_headers(self) -> dict[str, str]:
        """This thread's last response's headers (lower-case names); {} before any answer, or when
        the last request got none."""
        response = getattr(self._local, "response", None)
        if response is None or not response.headers:
            return {}
        return {name.lower(): value for name, value in response.headers.items()}

    def close(self) -> None:
        self.transport.close()


#: Every exception class httpx defines, in the taxonomy: (code, what happened, ambiguous).
#: `ambiguous`: the request may have reached Twilio and been processed (its answer was lost), so
#: a retry could send the text twice. A class not listed falls back to its nearest listed base.
_DOWN, _FAILED = ErrorCode.PROVIDER_UNAVAILABLE, ErrorCode.PROVIDER_ERROR
HTTPX_ERRORS: dict[type[Exception], tuple[ErrorCode, str, bool]] = {
    # nothing reached Twilio: a retry is safe
    httpx.ConnectTimeout: (_DOWN, "cannot connect to twilio (connect timeout)", False),
    httpx.ConnectError: (_DOWN, "cannot connect to twilio", False),
    httpx.PoolTimeout: (_DOWN, "cannot connect to twilio (no free connection)", False),
    httpx.ProxyError: (_DOWN, "cannot connect to twilio (proxy)", False),
    httpx.UnsupportedProtocol: (_FAILED, "the twilio API URL is not http(s)", False),
    httpx.InvalidURL: (_FAILED, "the twilio API URL is invalid", False),
    httpx.LocalProtocolError: (_FAILED, "the request to twilio could not be sent", False),
    httpx.TooManyRedirects: (_FAILED, "twilio answered with too many redirects", False),
    httpx.CookieConflict: (_FAILED, "twilio request failed (cookie conflict)", False),
    httpx.StreamError: (_FAILED, "twilio request failed (stream misuse)", False),
    httpx.RequestNotRead: (_FAILED, "twilio request failed (stream misuse)", False),
    httpx.ResponseNotRead: (_FAILED, "twilio request failed (stream misuse)", False),
    httpx.StreamConsumed: (_FAILED, "twilio request failed (stream misuse)", False),
    httpx.StreamClosed: (_FAILED, "twilio request failed (stream misuse)", False),
    # the request was (maybe partly) sent: Twilio may hold the message
    httpx.ReadTimeout: (_DOWN, "twilio did not answer in time", True),
    httpx.WriteTimeout: (_DOWN, "twilio did not take the request in time", True),
    httpx.TimeoutException: (_DOWN, "twilio did not answer in time", True),
    httpx.ReadError: (_DOWN, "the connection to twilio failed (read error)", True),
    httpx.WriteError: (_DOWN, "the connection to twilio failed (write error)", True),
    httpx.CloseError: (_DOWN, "the connection to twilio failed (close error)", True),
    httpx.NetworkError: (_DOWN, "the connection to twilio failed", True),
    httpx.RemoteProtocolError: (_DOWN, "the connection to twilio failed (broken answer)", True),
    httpx.ProtocolError: (_DOWN, "the connection to twilio failed (protocol error)", True),
    httpx.TransportError: (_DOWN, "the connection to twilio failed", True),
    httpx.DecodingError: (_DOWN, "twilio's answer could not be decoded", True),
    httpx.RequestError: (_DOWN, "twilio request failed", True),
    httpx.HTTPStatusError: (_FAILED, "twilio answered with an error status", False),
    httpx.HTTPError: (_DOWN, "twilio request failed", True),
}

#: what `translate_httpx_error` takes (`except HTTPX_ERROR_TYPES:`)
HTTPX_ERROR_TYPES: tuple[type[Exception], ...] = tuple(HTTPX_ERRORS)


def translate_httpx_error(exc: Exception) -> SendError:
    """An httpx exception (the SDK's transport here) in the taxonomy: the row of its class, or of
    its nearest base class in `HTTPX_ERRORS`."""
    for cls in type(exc).__mro__:
        entry = HTTPX_ERRORS.get(cls)
        if entry is not None:
            code, what, ambiguous = entry
            return SendError(code, what, ambiguous=ambiguous)
    return SendError(ErrorCode.PROVIDER_ERROR, f"twilio: unexpected {type(exc).__name__}")
