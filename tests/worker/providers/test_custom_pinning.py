"""Custom endpoints connect only to the addresses that were checked (no DNS rebinding)."""

from __future__ import annotations

import datetime
import http.server
import ssl
import threading
import typing
from collections.abc import Iterator
from pathlib import Path

import httpcore
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from producers.contract import ErrorCode
from worker.config.models import Connection
from worker.errors import SendError
from worker.providers import ProviderPool
from worker.providers.base import OutboundSms
from worker.providers.custom import CustomProvider, check_endpoint, probe_endpoint
from worker.providers.pinning import PinnedBackend, PinnedResolver, PinnedTransport
from worker.providers.probe import probe
from worker.settings import Settings
from worker.testing.custom import FakeCustomEndpoint

PUBLIC = "93.184.215.14"  # a global address; the recording backend never really connects to it
HOST = "sms.gateway.test"


def sms() -> OutboundSms:
    return OutboundSms(
        to="+14155551234", from_="+14155550000", body="hello", idempotency_key="k1", job_id="job-1"
    )


class ScriptedDns:
    """A resolver that answers from a script: the first answer, then the rest for every later query."""

    def __init__(self, first: list[str], later: list[str]) -> None:
        self.first, self.later = first, later
        self.queries = 0

    def __call__(self, host: str, port: int) -> list[str]:
        self.queries += 1
        return self.first if self.queries == 1 else self.later


class RecordingBackend(httpcore.NetworkBackend):
    """Records every address a connection is opened to; connects for real only to 127.0.0.1
    (anything else fails as an unreachable host would, so no test leaves this machine)."""

    def __init__(self) -> None:
        self.connects: list[str] = []
        self._real = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        self.connects.append(host)
        if host != "127.0.0.1":
            raise httpcore.ConnectError("unreachable in tests")
        return self._real.connect_tcp(host, port, timeout, local_address, socket_options)

    def sleep(self, seconds: float) -> None:
        self._real.sleep(seconds)


_clients: list[httpx.Client] = []


@pytest.fixture(autouse=True)
def close_clients() -> Iterator[None]:
    """Every client `pinned_provider` built is closed after the test."""
    yield
    while _clients:
        _clients.pop().close()


def pinned_provider(
    url: str, dns: ScriptedDns, recorder: RecordingBackend, *, allow_private: bool, ttl: float = 30.0,
    verify: ssl.SSLContext | bool = True,
) -> CustomProvider:  # fmt: skip
    backend = PinnedBackend(PinnedResolver(ttl=ttl, resolve=dns), allow_private=allow_private, inner=recorder)
    client = httpx.Client(
        transport=PinnedTransport(backend, limits=httpx.Limits(max_connections=4), verify=verify),
        timeout=2.0,
        follow_redirects=False,
        trust_env=False,
    )
    _clients.append(client)
    return CustomProvider(url, {}, http=client, allow_private=allow_private)


def send_error(provider: CustomProvider) -> SendError:
    with pytest.raises(SendError) as caught:
        provider.send(sms())
    return caught.value


def test_a_resolver_answering_public_then_loopback_never_gets_a_loopback_connection() -> None:
    """DNS rebinding: the first answer is public, every later one loopback (where a fake endpoint
    listens). Each connection uses one resolution and goes to a checked address: the public one,
    while it is cached; once the cache is gone the loopback answer is refused before connecting.
    Nothing reaches the loopback endpoint."""
    with FakeCustomEndpoint() as fake:
        dns = ScriptedDns(first=[PUBLIC], later=["127.0.0.1"])
        recorder = RecordingBackend()
        provider = pinned_provider(f"https://{HOST}:{fake.port}/sms", dns, recorder, allow_private=False)
        within_ttl = [send_error(provider).code for _ in range(3)]
        expired = pinned_provider(
            f"https://{HOST}:{fake.port}/sms", dns, recorder, allow_private=False, ttl=0
        )  # a fresh cache: the next resolution is the loopback answer
        after = send_error(expired)
        print(
            f"\nrebinding: resolutions={dns.queries} connects={len(recorder.connects)} "
            f"connects_to_loopback={recorder.connects.count('127.0.0.1')} "
            f"requests_at_loopback={len(fake.requests)}"
        )
    assert within_ttl == [ErrorCode.PROVIDER_UNAVAILABLE] * 3  # the public address is unreachable here
    assert set(recorder.connects) == {PUBLIC}
    assert (after.code, after.cause) == (ErrorCode.SENDER_INVALID, "custom_endpoint")
    assert fake.requests == []
    assert dns.queries == 2, "the cached answer was not reused within its TTL"


def test_one_answer_with_a_public_and_a_loopback_address_is_refused_whole() -> None:
    """Every address of an answer is checked: public first, loopback second is refused, and no
    connection is opened at all."""
    recorder = RecordingBackend()
    provider = pinned_provider(
        f"https://{HOST}/sms", ScriptedDns([PUBLIC, "127.0.0.1"], []), recorder, allow_private=False
    )
    err = send_error(provider)
    assert (err.code, err.cause) == (ErrorCode.SENDER_INVALID, "custom_endpoint")
    assert recorder.connects == []


@pytest.mark.parametrize("address", ["10.0.0.8", "169.254.169.254", "::1", "::ffff:127.0.0.1", "fe80::1"])
def test_private_addresses_behind_a_public_name_are_refused(address: str) -> None:
    """A name that resolves to a private, link-local, loopback or IPv4-mapped loopback address."""
    with pytest.raises(SendError) as caught:
        check_endpoint(
            f"https://{HOST}/sms",
            allow_private=False,
            resolver=PinnedResolver(ttl=1, resolve=lambda h, p: [address]),
        )
    assert caught.value.code == ErrorCode.SENDER_INVALID


def test_the_host_name_stays_in_the_host_header_when_the_address_is_pinned() -> None:
    """With private endpoints allowed (tests, on-premise), a name pinned to 127.0.0.1 is still
    sent as the `Host` header."""
    with FakeCustomEndpoint() as fake:
        provider = pinned_provider(
            f"http://{HOST}:{fake.port}/sms",
            ScriptedDns(["127.0.0.1"], []),
            RecordingBackend(),
            allow_private=True,
        )
        provider.send(sms())
        [request] = fake.requests
    assert request.headers.get("host") == f"{HOST}:{fake.port}"


def test_resolution_is_cached_and_refreshed_off_the_send_path() -> None:
    """Within the TTL sends reuse one answer; past half of it a background refresh runs while
    the cached answer is served; past the TTL the next send resolves inline."""
    now = [0.0]
    answers = iter([["1.1.1.1"], ["1.0.0.1"], ["8.8.8.8"]])
    queries: list[float] = []
    refreshed = threading.Event()

    def resolve(host: str, port: int) -> list[str]:
        queries.append(now[0])
        answer = next(answers)
        if len(queries) == 2:
            refreshed.set()
        return answer

    resolver = PinnedResolver(ttl=10, resolve=resolve, clock=lambda: now[0])
    assert [resolver.addresses(HOST, 443) for _ in range(100)] == [("1.1.1.1",)] * 100
    now[0] = 6.0  # past half the TTL: served from the cache, refreshed in the background
    assert resolver.addresses(HOST, 443) == ("1.1.1.1",)
    assert refreshed.wait(5)
    now[0] = 8.0
    assert resolver.addresses(HOST, 443) == ("1.0.0.1",)  # the refreshed answer, valid until 16
    now[0] = 20.0
    assert resolver.addresses(HOST, 443) == ("8.8.8.8",)  # expired: resolved inline
    assert queries == [0.0, 6.0, 20.0]


# -- TLS: the pinned connection still verifies the host name ---------------------------------------


def _certificate(tmp_path: Path, name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


class TlsEndpoint:
    """An HTTPS endpoint on 127.0.0.1 with a certificate for `name`; records SNI and Host headers."""

    def __init__(self, tmp_path: Path, name: str) -> None:
        self.cert, key = _certificate(tmp_path, name)
        self.server_names: list[str | None] = []
        self.hosts: list[str | None] = []
        endpoint = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                endpoint.hosts.append(self.headers.get("Host"))
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                body = b'{"id": "gw-1"}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, key)
        context.sni_callback = lambda sock, server_name, ctx: self.server_names.append(server_name)
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))


@pytest.fixture
def tls_endpoint(tmp_path: Path) -> Iterator[TlsEndpoint]:
    endpoint = TlsEndpoint(tmp_path, HOST)
    endpoint.thread.start()
    yield endpoint
    endpoint.httpd.shutdown()
    endpoint.httpd.server_close()


def test_tls_to_a_pinned_address_uses_the_host_name_for_sni_and_the_certificate(
    tls_endpoint: TlsEndpoint,
) -> None:
    """The connection goes to the pinned 127.0.0.1, but TLS sends SNI `sms.gateway.test`, checks
    the certificate against that name, and the request carries it as `Host`."""
    provider = pinned_provider(
        f"https://{HOST}:{tls_endpoint.port}/sms", ScriptedDns(["127.0.0.1"], []), RecordingBackend(),
        allow_private=True, verify=tls_endpoint.client_context(),
    )  # fmt: skip
    receipt = provider.send(sms())
    assert receipt.message_id == "gw-1"
    assert tls_endpoint.server_names == [HOST]
    assert tls_endpoint.hosts == [f"{HOST}:{tls_endpoint.port}"]


def test_a_certificate_for_another_name_is_refused(tmp_path: Path, tls_endpoint: TlsEndpoint) -> None:
    """Pinning does not weaken verification: another name pinned to the same server fails TLS."""
    other = "other.gateway.test"
    provider = pinned_provider(
        f"https://{other}:{tls_endpoint.port}/sms", ScriptedDns(["127.0.0.1"], []), RecordingBackend(),
        allow_private=True, verify=tls_endpoint.client_context(),
    )  # fmt: skip
    send_error(provider)
    assert tls_endpoint.hosts == []
    with pytest.raises(SendError) as caught:
        probe_endpoint(
            f"https://{other}:{tls_endpoint.port}/sms", allow_private=True, timeout=2.0,
            resolver=PinnedResolver(ttl=1, resolve=lambda h, p: ["127.0.0.1"]),
            verify=tls_endpoint.client_context(),
        )  # fmt: skip
    assert caught.value.code == ErrorCode.SENDER_INVALID


# -- `config connection test` on a custom connection -----------------------------------------------


def _custom(url: str) -> Connection:
    return Connection(label="Gateway", provider="custom", custom_api_url=url)


def test_connection_test_refuses_a_name_that_resolves_to_loopback() -> None:
    """`connection test` runs the send's checks: a name resolving to loopback is `sender_invalid`."""
    result = probe(
        _custom(f"https://{HOST}/sms"),
        timeout=1.0,
        resolver=PinnedResolver(ttl=1, resolve=lambda h, p: ["127.0.0.1"]),
    )
    print(f"\nconnection test: {result.outcome} — {result.detail}")
    assert (result.ok, result.outcome) == (False, "sender_invalid")


def test_connection_test_connects_and_checks_tls_without_sending(tls_endpoint: TlsEndpoint) -> None:
    """A reachable endpoint with a valid certificate is `ok`, and no request was sent to it."""
    detail = probe_endpoint(
        f"https://{HOST}:{tls_endpoint.port}/sms", allow_private=True, timeout=2.0,
        resolver=PinnedResolver(ttl=1, resolve=lambda h, p: ["127.0.0.1"]),
        verify=tls_endpoint.client_context(),
    )  # fmt: skip
    assert "TLS verified" in detail and "nothing sent" in detail
    assert tls_endpoint.server_names == [HOST]
    assert tls_endpoint.hosts == []


def test_connection_test_reports_an_unreachable_endpoint() -> None:
    """Nothing listens: `provider_unavailable`."""
    from worker.redis_server import free_port

    result = probe(_custom(f"http://127.0.0.1:{free_port()}/sms"), timeout=1.0, allow_private=True)
    assert (result.ok, result.outcome) == (False, "provider_unavailable")


def test_the_pool_gives_custom_endpoints_the_pinned_client(tmp_path: Path) -> None:
    """Workers build custom providers on the pinned transport (not the shared client)."""
    pool = ProviderPool(Settings(allow_private_endpoints=True), client=None)  # type: ignore[arg-type]
    try:
        with FakeCustomEndpoint() as fake:
            provider = pool.get(_custom(f"http://localhost:{fake.port}/sms"))
            provider.send(sms())
            assert len(fake.requests) == 1
        assert isinstance(pool.pinned_http()._transport, PinnedTransport)
    finally:
        pool.close()
