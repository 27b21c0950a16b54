"""`config connection test` and `numbers`: a connection's account requests, none of which sends an SMS.

The requests themselves are each provider's (`SmsProvider.check_credentials`, `list_numbers`,
`check_sender`; each one's docstring names the API call, and docs/architecture.md has the
table); this module runs the one the connection's provider declares, through the registry.
Outcomes use the send taxonomy (`auth_failed`, `provider_unavailable`, …). Every detail shown is
scrubbed of the connection's secrets, whatever the provider echoed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import httpx

from worker.config.models import Connection
from worker.errors import SendError
from worker.providers.numbers import NotSupported, NumberListing
from worker.providers.pinning import PinnedResolver
from worker.providers.registry import provider_class


@dataclass(frozen=True, slots=True)
class ProbeResult:
    #: `ok`, `not_checked`, or an error code of the taxonomy
    outcome: str
    detail: str

    @property
    def ok(self) -> bool:
        return self.outcome in ("ok", "not_checked")


@dataclass(frozen=True, slots=True)
class NumbersResult:
    """The account's numbers, or why there are none: `unsupported` (no list) or `error`."""

    listing: NumberListing | None = None
    unsupported: str | None = None
    error: ProbeResult | None = None


@contextlib.contextmanager
def _client(http: httpx.Client | None, timeout: float) -> Iterator[httpx.Client]:
    if http is not None:
        yield http
        return
    with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client:
        yield client


def probe(
    connection: Connection,
    *,
    timeout: float,
    http: httpx.Client | None = None,
    allow_private: bool = False,
    resolver: PinnedResolver | None = None,
) -> ProbeResult:
    """Check `connection`'s credentials against its provider; `http` (tests) replaces the httpx client.

    A provider that checks an endpoint (`checks_endpoint`: custom) also gets `allow_private`
    (SMS_ALLOW_PRIVATE_ENDPOINTS) and `resolver` (tests: the endpoint's DNS)."""
    provider = provider_class(connection.provider)
    endpoint = {"allow_private": allow_private, "resolver": resolver} if provider.checks_endpoint else {}
    try:
        with _client(http, timeout) as client:
            detail = provider.check_credentials(connection, http=client, timeout=timeout, **endpoint)
    except NotSupported as exc:
        return ProbeResult("not_checked", str(exc))
    except SendError as err:
        return ProbeResult(err.code.value, scrub(err.message, connection))
    return ProbeResult("ok", scrub(detail, connection))


def list_numbers(
    connection: Connection, *, timeout: float, http: httpx.Client | None = None
) -> NumbersResult:
    """The numbers on `connection`'s account, every page read (bounded)."""
    provider = provider_class(connection.provider)
    try:
        with _client(http, timeout) as client:
            return NumbersResult(listing=provider.list_numbers(connection, http=client, timeout=timeout))
    except NotSupported as exc:
        return NumbersResult(unsupported=str(exc))
    except SendError as err:
        return NumbersResult(error=ProbeResult(err.code.value, scrub(err.message, connection)))


def scrub(text: str, connection: Connection) -> str:
    """`text` with every secret of the connection masked, should a provider have echoed one."""
    secrets = [
        v.get_secret_value()
        for v in (*connection.credentials.values(), *connection.custom_api_headers.values())
    ]
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= 4:
            text = text.replace(secret, "****")
    return text
