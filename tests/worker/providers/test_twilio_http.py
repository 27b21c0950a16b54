"""The Twilio SDK on httpx (`worker/providers/twilio_http.py`): the same requests on the wire as the
SDK's own `requests` transport, one pool of keep-alive connections, each thread's last headers,
and every httpx exception in the taxonomy."""

from __future__ import annotations

import inspect
import threading
from collections.abc import Iterator

import httpx
import pytest
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from producers.contract import ErrorCode
from worker.config.models import Connection
from worker.errors import SendError
from worker.providers.base import OutboundSms
from worker.providers.twilio import TwilioProvider
from worker.providers.twilio_http import HTTPX_ERRORS, HttpxTwilioClient, translate_httpx_error
from worker.testing.actions import Error
from worker.testing.twilio import FakeTwilio

GOOD = "+15005550006"
DOWN, FAILED = ErrorCode.PROVIDER_UNAVAILABLE, ErrorCode.PROVIDER_ERROR
SDK_HEADERS = ("authorization", "content-type", "user-agent", "x-twilio-client", "accept", "accept-charset")


@pytest.fixture
def fake() -> Iterator[FakeTwilio]:
    with FakeTwilio() as fake:
        yield fake
        assert fake.violations == []


def sdk(fake: FakeTwilio, http_client: object) -> Client:
    client = Client(
        fake.account_sid,
        fake.auth_token,
        http_client=http_client,
        environment={"TWILIO_IGNORE_ENVIRONMENT": "1"},
    )
    client.api.base_url = fake.url
    return client


def connection(fake: FakeTwilio) -> Connection:
    return Connection(
        label="Twilio",
        provider="twilio",
        from_number=GOOD,
        credentials={"account_sid": fake.account_sid, "auth_token": fake.auth_token},
        api_base_url=fake.url,
    )


def test_the_sdk_sends_the_same_request_through_httpx_as_through_requests(fake: FakeTwilio) -> None:
    """A `messages.create` (repeated MediaUrl, an int field) and a paged list read put the same
    method, path, query, body and SDK headers on the wire through httpx as through the SDK's own
    `requests` client, and the answers come back as the same records; the fake finds no violation."""
    requests_stack = TwilioHttpClient(timeout=5)
    httpx_stack = HttpxTwilioClient(timeout=5, pool_size=4)
    try:
        for http_client in (requests_stack, httpx_stack):
            client = sdk(fake, http_client)
            message = client.messages.create(
                to=GOOD,
                from_=GOOD,
                body="Ünïcode & spaces + signs",
                media_url=["https://example.com/a.png", "https://example.com/b.png"],
                validity_period=600,
            )
            assert message.sid.startswith("MM") and message.status == "queued"  # MMS: media
            assert [n.phone_number for n in client.incoming_phone_numbers.stream(page_size=2, limit=3)]
    finally:
        assert requests_stack.session is not None
        requests_stack.session.close()
        httpx_stack.close()
    sent = fake.requests
    assert len(sent) % 2 == 0 and len(sent) >= 4
    half = len(sent) // 2
    for old, new in zip(sent[:half], sent[half:], strict=True):
        assert (new.method, new.path, new.query, new.body) == (old.method, old.path, old.query, old.body)
        assert {h: new.headers.get(h) for h in SDK_HEADERS} == {h: old.headers.get(h) for h in SDK_HEADERS}
    assert sent[half].form_lists()["MediaUrl"] == ["https://example.com/a.png", "https://example.com/b.png"]


def test_one_pool_of_keep_alive_connections_sized_from_the_concurrency(fake: FakeTwilio) -> None:
    """Twenty sends one after another use one TCP connection; eight threads sending at once use at
    most eight; and a pool of two never opens a third connection, whatever the threads."""
    provider = TwilioProvider(connection(fake), timeout=5, pool_size=8)
    ports: list[int] = []
    lock = threading.Lock()

    def recording(http: HttpxTwilioClient) -> None:
        """Record the local port of the connection each request went out on."""
        handle = http.transport.handle_request

        def handle_and_record(request: httpx.Request) -> httpx.Response:
            response = handle(request)
            with lock:
                ports.append(response.extensions["network_stream"].get_extra_info("client_addr")[1])
            return response

        http.transport.handle_request = handle_and_record  # type: ignore[method-assign]

    recording(provider._http)
    message = OutboundSms(to=GOOD, from_=GOOD, body="hi", job_id="j", idempotency_key="k")

    def send_five() -> None:
        for _ in range(5):
            provider.send(message)

    try:
        for _ in range(20):
            provider.send(message)
        assert len(set(ports)) == 1, ports

        ports.clear()
        fake.latency = 0.02  # so that the threads' requests overlap
        threads = [threading.Thread(target=send_five) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(ports) == 40 and 1 < len(set(ports)) <= 8
    finally:
        provider.close()

    small = TwilioProvider(connection(fake), timeout=5, pool_size=2)
    recording(small._http)
    ports.clear()
    try:
        threads = [threading.Thread(target=lambda: [small.send(message) for _ in range(3)]) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(ports) == 18 and len(set(ports)) <= 2
    finally:
        small.close()


def test_each_thread_keeps_its_own_last_response_headers(fake: FakeTwilio) -> None:
    """A thread whose request got 429 + Retry-After still sees that header after another thread's
    request succeeded (the SDK's exception drops headers), and the send says rate_limited with
    the delay; a thread that sent nothing sees none."""
    provider = TwilioProvider(connection(fake), timeout=5, pool_size=4)
    message = OutboundSms(to=GOOD, from_=GOOD, body="hi", job_id="j", idempotency_key="k")
    limited, other_done = threading.Event(), threading.Event()
    seen: dict[str, object] = {}

    def rate_limited_thread() -> None:
        try:
            provider.send(message)
        except SendError as exc:
            seen["error"] = exc
        limited.set()
        other_done.wait(10)
        seen["limited_headers"] = provider._http.last_headers().get("retry-after")

    def ok_thread() -> None:
        limited.wait(10)
        provider.send(message)
        seen["ok_headers"] = provider._http.last_headers().get("retry-after")
        other_done.set()

    fake.script(Error(20429, status=429, headers={"Retry-After": "7"}))
    threads = [threading.Thread(target=rate_limited_thread), threading.Thread(target=ok_thread)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
        error = seen["error"]
        assert isinstance(error, SendError)
        assert (error.code, error.retry_after) == (ErrorCode.RATE_LIMITED, 7.0)
        assert (seen["limited_headers"], seen["ok_headers"]) == ("7", None)
        assert provider._http.last_headers() == {}
    finally:
        provider.close()


def _httpx_exception_classes() -> set[type[Exception]]:
    """Every exception class httpx defines, exported or not."""
    found = {
        cls
        for module in (httpx, httpx._exceptions)
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, Exception) and cls.__module__.startswith("httpx")
    }
    assert httpx.ReadTimeout in found and len(found) >= 25
    return found


def test_every_httpx_exception_class_has_its_own_row() -> None:
    """`HTTPX_ERRORS` names every exception class of the installed httpx (a new one in an httpx
    upgrade fails here until it is placed), and nothing that is not httpx's."""
    classes = _httpx_exception_classes()
    assert sorted(c.__name__ for c in classes - set(HTTPX_ERRORS)) == []
    assert sorted(c.__name__ for c in set(HTTPX_ERRORS) - classes) == []


@pytest.mark.parametrize(
    ("exc", "code", "ambiguous", "message"),
    [
        (httpx.ConnectError("refused"), DOWN, False, "cannot connect to twilio"),
        (httpx.ConnectTimeout("slow"), DOWN, False, "cannot connect to twilio (connect timeout)"),
        (httpx.PoolTimeout("full"), DOWN, False, "cannot connect to twilio (no free connection)"),
        (httpx.ReadTimeout("slow"), DOWN, True, "twilio did not answer in time"),
        (httpx.RemoteProtocolError("closed"), DOWN, True, "the connection to twilio failed (broken answer)"),
        (httpx.ReadError("reset"), DOWN, True, "the connection to twilio failed (read error)"),
        (httpx.UnsupportedProtocol("ftp"), FAILED, False, "the twilio API URL is not http(s)"),
        (httpx.StreamClosed(), FAILED, False, "twilio request failed (stream misuse)"),
    ],
)  # fmt: skip
def test_httpx_errors_in_the_taxonomy(exc: Exception, code: ErrorCode, ambiguous: bool, message: str) -> None:
    """Errors before anything reached Twilio are retryable and not ambiguous; errors after the
    request went out are ambiguous (Twilio may hold the message); misuse is not retried."""
    err = translate_httpx_error(exc)
    assert (err.code, err.ambiguous, err.message) == (code, ambiguous, message)
    assert err.retryable is (code == ErrorCode.PROVIDER_UNAVAILABLE)


def test_a_subclass_httpx_does_not_know_takes_its_nearest_row() -> None:
    """An exception derived from an httpx class (a transport's own) gets its base class's row."""

    class PeerReset(httpx.ReadError):
        pass

    assert translate_httpx_error(PeerReset("x")).message == "the connection to twilio failed (read error)"
    assert translate_httpx_error(RuntimeError("x")).code == ErrorCode.PROVIDER_ERROR


def test_a_refused_connection_is_cannot_connect_and_not_ambiguous(fake: FakeTwilio) -> None:
    """A send to a port nobody listens on fails `provider_unavailable`, retryable, not ambiguous."""
    conn = connection(fake)
    fake.stop()
    provider = TwilioProvider(conn, timeout=2, pool_size=1)
    try:
        with pytest.raises(SendError) as caught:
            provider.send(OutboundSms(to=GOOD, from_=GOOD, body="hi", job_id="j", idempotency_key="k"))
    finally:
        provider.close()
    assert (caught.value.code, caught.value.ambiguous, caught.value.message) == (
        ErrorCode.PROVIDER_UNAVAILABLE,
        False,
        "cannot connect to twilio",
    )
