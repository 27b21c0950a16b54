"""The scriptable base server: recording, keep-alive, scripted faults, latency, lifecycle."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from worker.testing import (
    AcceptedMessage,
    Delay,
    Drop,
    Error,
    FakeServer,
    Hang,
    RecordedRequest,
    Reply,
    Response,
)


class EchoServer(FakeServer):
    """Answers 200 with what it saw; `/crash` raises; every request is a send request."""

    def check(self, request: RecordedRequest) -> list[str]:
        return ["no body"] if not request.body else []

    def handle(self, request: RecordedRequest) -> Response:
        if request.path == "/crash":
            raise RuntimeError("boom")
        self.accept(AcceptedMessage("id-1", "+15551230000", None, request.body.decode(), request.received_at))
        return Response.json(200, {"path": request.path, "body": request.body.decode()})


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    with EchoServer() as server:
        yield server


@pytest.fixture
def client(echo: EchoServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=echo.url, timeout=5) as http:
        yield http


def test_records_each_request_with_helpers(echo: EchoServer, client: httpx.Client) -> None:
    """A request is recorded with its method, path, query, case-insensitive headers and body helpers."""
    before = time.monotonic()
    client.post(
        "/send?a=1&a=2&b=", data={"To": "+1555", "Body": "hi"}, headers={"X-Thing": "v"}, auth=("u", "p:w")
    )
    client.post("/json", json={"k": [1, 2]}, headers={"Authorization": "Bearer tok"})

    form, body = echo.requests
    assert (form.method, form.path, form.query) == ("POST", "/send", {"a": ["1", "2"], "b": [""]})
    assert form.headers["x-thing"] == form.headers["X-THING"] == "v"
    assert form.form() == {"To": "+1555", "Body": "hi"}
    assert form.content_type == "application/x-www-form-urlencoded"
    assert form.basic_auth() == ("u", "p:w") and form.bearer_token() is None
    assert body.json() == {"k": [1, 2]} and body.bearer_token() == "tok" and body.basic_auth() is None
    assert before <= form.received_at <= body.received_at <= time.monotonic()


def test_check_violations_are_recorded_per_request(echo: EchoServer, client: httpx.Client) -> None:
    """Whatever `check()` finds is kept on the request and in `violations`."""
    client.post("/empty")
    client.post("/full", content=b"x")

    assert echo.violations == ["no body"]
    assert [r.violations for r in echo.requests] == [("no body",), ()]


def test_keeps_a_connection_alive_across_requests(echo: EchoServer) -> None:
    """Two requests on one socket both get answers (HTTP/1.1 keep-alive)."""
    request = b"POST /k HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx"
    with socket.create_connection(("127.0.0.1", echo.port), timeout=5) as sock:
        answers = b""
        for expected in (1, 2):
            sock.sendall(request)
            while answers.count(b'"body": "x"}') < expected:
                answers += sock.recv(65536)
    assert answers.count(b"HTTP/1.1 200 OK") == 2


def test_scripted_actions_apply_once_each_in_order(echo: EchoServer, client: httpx.Client) -> None:
    """Each scripted action takes exactly one request; then the normal behaviour returns."""
    echo.script(Error(42, status=503), Reply(418, body=b"teapot", headers={"X-Raw": "1"}))

    first, second, third = (client.post("/s", content=b"x") for _ in range(3))

    assert (first.status_code, first.json()) == (503, {"code": 42, "message": "Service Unavailable"})
    assert (second.status_code, second.content, second.headers["x-raw"]) == (418, b"teapot", "1")
    assert third.status_code == 200
    assert len(echo.accepted) == 1  # scripted answers accept nothing


def test_delay_then_answers_normally_or_as_told(echo: EchoServer, client: httpx.Client) -> None:
    """Delay holds the answer back, then answers normally or with its `then` action."""
    echo.script(Delay(0.3), Delay(0.2, then=Reply(502, json={"e": 1})))

    started = time.monotonic()
    normal = client.post("/d", content=b"x")
    middle = time.monotonic()
    failed = client.post("/d", content=b"x")

    assert normal.status_code == 200 and middle - started >= 0.3
    assert failed.status_code == 502 and time.monotonic() - middle >= 0.2


def test_latency_applies_to_every_answer_and_changes_at_runtime(
    echo: EchoServer, client: httpx.Client
) -> None:
    """`latency` delays normal and scripted answers and can be changed between requests."""
    echo.latency = 0.25
    echo.script(Error(1, status=500))
    started = time.monotonic()
    client.post("/l", content=b"x")
    client.post("/l", content=b"x")
    assert time.monotonic() - started >= 0.5

    echo.latency = 0.0
    started = time.monotonic()
    client.post("/l", content=b"x")
    assert time.monotonic() - started < 0.25


def test_hang_makes_the_client_time_out_while_others_are_served(
    echo: EchoServer, client: httpx.Client
) -> None:
    """A hung request never gets an answer, yet the server keeps serving other connections."""
    echo.script(Hang())
    with pytest.raises(httpx.ReadTimeout):
        client.post("/h", content=b"x", timeout=0.3)

    assert client.post("/h", content=b"x").status_code == 200
    assert len(echo.requests) == 2 and len(echo.accepted) == 1


def test_processed_hang_accepts_the_message_without_answering(echo: EchoServer, client: httpx.Client) -> None:
    """Hang(processed=True) is the ambiguous case: the message was sent, the answer never comes."""
    echo.script(Hang(processed=True))
    with pytest.raises(httpx.ReadTimeout):
        client.post("/h", content=b"x", timeout=0.3)
    assert [m.text for m in echo.accepted] == ["x"]


def test_drop_closes_the_connection_without_a_response(echo: EchoServer, client: httpx.Client) -> None:
    """Drop gives the client a disconnect; Drop(reset=True) a connection reset."""
    echo.script(Drop(), Drop(reset=True), Drop(processed=True))

    with pytest.raises(httpx.RemoteProtocolError):
        client.post("/x", content=b"x")
    with pytest.raises(httpx.ReadError):
        client.post("/x", content=b"x")
    with pytest.raises(httpx.RemoteProtocolError):
        client.post("/x", content=b"x")
    assert len(echo.accepted) == 1  # only the processed drop sent something
    assert client.post("/x", content=b"x").status_code == 200


def test_a_crashing_handler_answers_500_and_reports_it(echo: EchoServer, client: httpx.Client) -> None:
    """A bug in a fake answers 500 and shows up in `violations` instead of killing the connection."""
    response = client.post("/crash", content=b"x")

    assert response.status_code == 500 and b"RuntimeError: boom" in response.content
    assert echo.violations == ["EchoServer crashed on POST /crash: RuntimeError('boom')"]
    assert client.post("/fine", content=b"x").status_code == 200


def test_malformed_http_gets_a_400(echo: EchoServer) -> None:
    """Bytes that are not HTTP get a 400 and a closed connection."""
    with socket.create_connection(("127.0.0.1", echo.port), timeout=5) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 400 ")


def test_reset_forgets_everything(echo: EchoServer, client: httpx.Client) -> None:
    """reset() clears requests, violations, accepted messages and the pending script."""
    echo.script(Error(1, status=500), Error(2, status=500))
    client.post("/r")
    echo.reset()

    assert (echo.requests, echo.violations, echo.accepted) == ([], [], [])
    assert client.post("/r", content=b"x").status_code == 200


def test_wait_for_requests_blocks_until_enough_arrived(echo: EchoServer, client: httpx.Client) -> None:
    """wait_for_requests returns the requests once enough arrived and raises TimeoutError otherwise."""
    client.post("/w", content=b"x")
    assert [r.path for r in echo.wait_for_requests(1, timeout=1)] == ["/w"]
    with pytest.raises(TimeoutError):
        echo.wait_for_requests(2, timeout=0.1)


def test_max_recorded_keeps_only_the_newest_requests() -> None:
    """With max_recorded, a long-running fake keeps a bounded number of requests."""
    with EchoServer(max_recorded=2) as server, httpx.Client(base_url=server.url) as http:
        for path in ("/1", "/2", "/3"):
            http.post(path, content=b"x")
        assert [r.path for r in server.requests] == ["/2", "/3"]


def test_lifecycle_errors_and_idempotent_stop() -> None:
    """The URL needs a started server, a second start() fails, stop() may be repeated, and a stopped
    server refuses connections."""
    server = EchoServer()
    with pytest.raises(RuntimeError, match="not started"):
        _ = server.url
    with server:
        port = server.port
        with pytest.raises(RuntimeError, match="already started"):
            server.start()
    server.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_stop_closes_hanging_connections() -> None:
    """stop() returns promptly even while a client waits on a hung request."""
    server = EchoServer().start()
    server.script(Hang())
    with httpx.Client(base_url=server.url) as http:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(b"POST /h HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx")
            server.wait_for_requests(1)
            started = time.monotonic()
            server.stop()
            assert time.monotonic() - started < 2
            assert sock.recv(100) == b""  # closed without an answer
        with pytest.raises(httpx.ConnectError):
            http.post("/after")
