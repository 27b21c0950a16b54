"""Pinned addresses for custom endpoints: resolve once, check every address, connect to it.

A custom endpoint's host is the platform user's, so its DNS is untrusted. Checking the name's
addresses and then letting httpx resolve it again would let a resolver answer a public address to
the check and a loopback one to the connection (DNS rebinding). Here the connection itself goes
through `PinnedBackend`, an httpcore network backend: for each new connection it takes one
resolution of the host (from `PinnedResolver`'s cache), refuses it if *any* address is loopback,
private, link-local or otherwise not global (unless `SMS_ALLOW_PRIVATE_ENDPOINTS`), and opens the
TCP connection to one of exactly those addresses. httpcore then starts TLS with the URL's host name
(SNI and certificate verification) and sends it in the `Host` header, as without pinning.

`getaddrinfo` reports no TTL, so an answer is kept for a bounded time, `SMS_CUSTOM_DNS_TTL`
seconds (default 30): a change of the endpoint's DNS reaches workers within that. Past half of it
a background thread refreshes the answer while sends keep using the cached one, so a steady stream
of sends never waits for DNS; only the first send to a host (or one after a quiet period longer
than the TTL) resolves inline.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
import time
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import httpcore
import httpx

from producers.contract import ErrorCode
from worker.errors import SendError

#: host, port → the addresses it resolves to, in the resolver's order
Resolve = Callable[[str, int], list[str]]

PRIVATE_REFUSED = (
    "custom_api_url resolves to a loopback, private or link-local address "
    "(set SMS_ALLOW_PRIVATE_ENDPOINTS=true to allow it)"
)


def system_resolve(host: str, port: int) -> list[str]:
    """The system resolver's addresses for `host` (getaddrinfo: /etc/hosts, DNS, …)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def is_public(address: str) -> bool:
    """A global unicast address (an IPv4-mapped IPv6 address is judged by its IPv4 address)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_addresses(addresses: Iterable[str], *, allow_private: bool) -> None:
    """Refuse the whole answer if any address is not public (`SendError(sender_invalid)`)."""
    if allow_private:
        return
    if not all(is_public(address) for address in addresses):
        raise SendError(ErrorCode.SENDER_INVALID, PRIVATE_REFUSED, cause="custom_endpoint")


@dataclass(frozen=True, slots=True)
class _Entry:
    addresses: tuple[str, ...]
    refresh_at: float
    expires_at: float


class PinnedResolver:
    """A thread-safe cache of host resolutions, each kept `ttl` seconds and refreshed in the
    background once half of it has passed."""

    def __init__(
        self, *, ttl: float, resolve: Resolve = system_resolve, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._ttl = ttl
        self._resolve = resolve
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, int], _Entry] = {}
        self._refreshing: set[tuple[str, int]] = set()

    def addresses(self, host: str, port: int) -> tuple[str, ...]:
        """One resolution of `host`: cached, or resolved now; `SendError` when it does not resolve."""
        try:
            return (str(ipaddress.ip_address(host)),)  # an address literal needs no resolver
        except ValueError:
            pass
        key = (host, port)
        now = self._clock()
        entry = self._cache.get(key)
        if entry is not None and now < entry.expires_at:
            if now >= entry.refresh_at:
                self._refresh_in_background(key)
            return entry.addresses
        return self._resolve_now(key)

    def _resolve_now(self, key: tuple[str, int]) -> tuple[str, ...]:
        try:
            addresses = tuple(self._resolve(*key))
        except (OSError, UnicodeError):
            raise SendError(
                ErrorCode.PROVIDER_UNAVAILABLE, "cannot resolve the custom endpoint's host"
            ) from None
        if not addresses:
            raise SendError(ErrorCode.PROVIDER_UNAVAILABLE, "the custom endpoint's host has no address")
        now = self._clock()
        with self._lock:
            self._cache[key] = _Entry(addresses, now + self._ttl / 2, now + self._ttl)
        return addresses

    def _refresh_in_background(self, key: tuple[str, int]) -> None:
        with self._lock:
            if key in self._refreshing:
                return
            self._refreshing.add(key)

        def refresh() -> None:
            try:
                self._resolve_now(key)
            except SendError:
                pass  # the cached answer stays until it expires; the next send then resolves inline
            finally:
                with self._lock:
                    self._refreshing.discard(key)

        threading.Thread(target=refresh, name="custom-dns-refresh", daemon=True).start()


class PinnedBackend(httpcore.NetworkBackend):
    """An httpcore network backend that connects only to checked addresses of the host.

    `inner` does the actual connecting (httpcore's socket backend; tests record with it).
    """

    def __init__(
        self,
        resolver: PinnedResolver,
        *,
        allow_private: bool,
        inner: httpcore.NetworkBackend | None = None,
    ) -> None:
        self._resolver = resolver
        self._allow_private = allow_private
        self._inner = inner or httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = self._resolver.addresses(host, port)
        check_addresses(addresses, allow_private=self._allow_private)
        failure: Exception | None = None
        for address in addresses:
            try:
                return self._inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None
        raise failure

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("custom endpoints are reached over TCP only")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class PinnedTransport(httpx.HTTPTransport):
    """httpx's transport, with its connection pool on a `PinnedBackend` (no proxy, HTTP/1.1)."""

    def __init__(
        self,
        backend: PinnedBackend,
        *,
        limits: httpx.Limits,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        super().__init__(verify=verify, trust_env=False, limits=limits)
        # httpx has no argument for a network backend: rebuild its pool the way it does, with ours.
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify, trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=backend,
        )
