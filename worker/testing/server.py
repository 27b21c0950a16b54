"""`FakeServer`: a scriptable HTTP/1.1 server on 127.0.0.1, the base of every fake provider.

It runs asyncio + h11 on a background thread. The thread keeps it usable from synchronous tests and
blocking SDKs (Twilio's). Asyncio is there because the benchmark holds hundreds of keep-alive
connections open, each answered after ~100 ms of artificial latency (~1,000 req/s), and a thread per
connection (`http.server`) cannot do that on two cores.

One request goes: parse (h11, in `wire`) → `check` the provider contract → record → take the next
scripted action if `is_send` → sleep (Delay, then `latency`) → answer (`handle` or the scripted reply),
or hang or drop. A fake may start background work on its own loop from `handle()` (`background`),
and may hold its answer back until some of that work is done (`hold_answer`): the provider webhooks
of `worker.testing.webhooks` run that way.
"""

from __future__ import annotations

import abc
import asyncio
import concurrent.futures
import contextlib
import dataclasses
import threading
import traceback
from collections import deque
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, Self, TypedDict

import h11

from worker.testing import wire
from worker.testing.actions import Action, Delay, Drop, Error, Hang, Reply
from worker.testing.exchange import AcceptedMessage, RecordedRequest, Response


class ServerOptions(TypedDict, total=False):
    """The keyword arguments every fake passes through to `FakeServer.__init__`."""

    host: str
    port: int
    latency: float
    max_recorded: int | None


class FakeServer(abc.ABC):
    """Records every request, answers through `handle()` unless a scripted action says otherwise.

    `latency` (seconds, settable at any time) delays every answer, normal or scripted; Hang and Drop
    ignore it. `max_recorded` bounds the memory kept for `requests` in long benchmark runs.
    """

    def __init__(
        self, *, host: str = "127.0.0.1", port: int = 0, latency: float = 0.0, max_recorded: int | None = None
    ) -> None:
        self.host = host
        self.port = port
        self.latency = latency
        # Guards all state the test thread reads; subclasses keep their own state under it too,
        # since `handle()` is called holding it and `reset()` may run on another thread.
        self._lock = threading.RLock()
        self._arrived = threading.Condition(self._lock)
        self._requests: deque[RecordedRequest] = deque(maxlen=max_recorded)
        self._violations: list[str] = []
        self._accepted: list[AcceptedMessage] = []
        self._script: deque[Action] = deque()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._holds: list[asyncio.Event] = []

    # -- lifecycle -------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """Base URL, e.g. "http://127.0.0.1:43123" (available once started)."""
        if self._thread is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return f"http://{self.host}:{self.port}"

    def start(self) -> Self:
        """Bind and serve on a background thread; returns once the port accepts connections."""
        if self._thread is not None:
            raise RuntimeError(f"{type(self).__name__} is already started")
        started: concurrent.futures.Future[int] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._run, args=(started,), name=type(self).__name__, daemon=True
        )
        self._thread.start()
        try:
            self.port = started.result(timeout=30)
        except BaseException:
            self._thread.join()
            self._thread = None
            raise
        return self

    def stop(self) -> None:
        """Close every connection (hanging ones included) and the listening socket; idempotent."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- what tests read and script ----------------------------------------------------------------
    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of the requests received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def violations(self) -> list[str]:
        """Contract violations found in requests so far (plus crashes of the fake itself)."""
        with self._lock:
            return list(self._violations)

    @property
    def accepted(self) -> list[AcceptedMessage]:
        """The messages the fake provider accepted, i.e. the SMS that would have been sent."""
        with self._lock:
            return list(self._accepted)

    def script(self, *actions: Action) -> None:
        """Queue behaviours for the next send requests, one per request, consumed in order."""
        with self._lock:
            self._script.extend(actions)

    def reset(self) -> None:
        """Forget requests, violations, accepted messages, pending script and provider state.

        Background work still running (a previous test's callbacks) is cancelled first.
        """
        loop = self._loop
        if loop is not None and self._thread is not threading.current_thread():
            asyncio.run_coroutine_threadsafe(self._cancel_background(), loop).result(30)
        with self._lock:
            self._requests.clear()
            self._violations.clear()
            self._accepted.clear()
            self._script.clear()
            self.on_reset()

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Block until at least `count` requests were recorded; raises TimeoutError otherwise."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self._requests) >= count, timeout):
                raise TimeoutError(f"{len(self._requests)} of {count} requests after {timeout} s")
            return list(self._requests)

    # -- provider hooks ------------------------------------------------------------------------------
    @abc.abstractmethod
    def handle(self, request: RecordedRequest) -> Response:
        """The provider's normal answer (called on the server thread, holding `self._lock`)."""

    def check(self, request: RecordedRequest) -> list[str]:
        """Contract violations in `request` (runs for every request, scripted or not)."""
        return []

    def is_send(self, request: RecordedRequest) -> bool:
        """Whether `request` targets the send endpoint, the only one that consumes scripted actions."""
        return True

    def render_error(self, error: Error) -> Response:
        """The provider's error body for a scripted `Error`."""
        message = error.message or wire.phrase(error.status)
        return Response.json(error.status, {"code": error.code, "message": message}, error.headers)

    def on_reset(self) -> None:  # noqa: B027 - an optional hook, empty on purpose
        """Clear provider-specific state (called holding `self._lock`)."""

    async def on_close(self) -> None:  # noqa: B027 - an optional hook, empty on purpose
        """Release what the fake opened on its loop (called on the loop thread while stopping)."""

    def background(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` on the fake's own loop, without holding up any answer (from `handle()`)."""
        loop = self._loop
        if loop is None:
            work.close()
            raise RuntimeError(f"{type(self).__name__} is not started")
        task = loop.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def hold_answer(self, until: asyncio.Event) -> None:
        """From `handle()`: write the answer being computed only once `until` is set (at most 30 s)."""
        self._holds.append(until)

    async def _cancel_background(self) -> None:
        tasks = list(self._background)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def run_on_loop(self, work: Coroutine[Any, Any, Any], timeout: float) -> Any:
        """Run `work` on the fake's loop from another thread and return its result."""
        loop = self._loop
        if loop is None:
            work.close()
            raise RuntimeError(f"{type(self).__name__} is not started")
        return asyncio.run_coroutine_threadsafe(work, loop).result(timeout)

    def accept(self, message: AcceptedMessage) -> None:
        """Record a message the provider accepted (for `handle()` implementations)."""
        with self._lock:
            self._accepted.append(message)

    # -- the server thread ---------------------------------------------------------------------------
    def _run(self, started: concurrent.futures.Future[int]) -> None:
        loop = asyncio.new_event_loop()
        try:
            # A large backlog: hundreds of clients connect at once in the benchmark, and SYNs dropped
            # from a full queue are retried only after a second, which would look like server latency.
            server = loop.run_until_complete(
                asyncio.start_server(self._serve, self.host, self.port, backlog=2048)
            )
        except BaseException as exc:
            loop.close()
            started.set_exception(exc)
            return
        self._loop = loop
        started.set_result(server.sockets[0].getsockname()[1])
        try:
            loop.run_forever()
            loop.run_until_complete(self._close(server))
        finally:
            loop.close()
            self._loop = None

    async def _close(self, server: asyncio.Server) -> None:
        server.close()
        with contextlib.suppress(Exception):
            await self.on_close()
        # Every other task on this private loop serves a connection (hung ones included).
        connections = asyncio.all_tasks() - {asyncio.current_task()}
        for task in connections:
            task.cancel()
        await asyncio.gather(*connections, return_exceptions=True)
        await server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while await self._exchange(conn, reader, writer):
                conn.start_next_cycle()
        except h11.RemoteProtocolError as exc:
            with contextlib.suppress(h11.LocalProtocolError, OSError):
                await wire.write_response(conn, writer, Response(exc.error_status_hint, str(exc).encode()))
        except OSError:
            pass  # the client went away; nothing to answer
        except asyncio.CancelledError:
            # stop() cancels us. End quietly: on 3.11 the stream protocol's done-callback calls
            # task.exception(), which raises (and logs) for a task that ended cancelled.
            pass
        except Exception as exc:  # a bug in the fake: make the test see it
            with self._lock:
                self._violations.append(f"{type(self).__name__} connection failed: {exc!r}")
        finally:
            writer.close()
            with contextlib.suppress(OSError, asyncio.CancelledError):  # stop() may cancel us here too
                await writer.wait_closed()

    async def _exchange(
        self, conn: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Read one request and deal with it; False when the connection must end."""
        received = await wire.read_request(conn, reader, writer)
        if received is None:
            return False
        request = self._record(received)
        action = self._next_action(request)
        if isinstance(action, Delay):
            await asyncio.sleep(action.seconds)
            action = action.then
        if isinstance(action, Hang | Drop):
            if action.processed:
                self._answer(request, None)
                self._holds = []  # there is no answer to hold back
            if isinstance(action, Hang):  # until the client gives up (EOF) or stop() cancels us
                while await reader.read(wire.READ_SIZE):
                    pass
            elif action.reset:
                wire.abort_with_rst(writer)
            return False
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        response = self._answer(request, action)
        # No await between `_answer` and here, so the holds are exactly those `handle` just made.
        holds, self._holds = self._holds, []
        for hold in holds:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(hold.wait(), 30)
        await wire.write_response(conn, writer, response)
        return conn.our_state is h11.DONE and conn.their_state is h11.DONE

    def _record(self, request: RecordedRequest) -> RecordedRequest:
        try:
            violations = self.check(request)
        except Exception as exc:  # a broken checker must show up in the test, not kill the connection
            violations = [f"{type(self).__name__}.check crashed: {exc!r}"]
        request = dataclasses.replace(request, violations=tuple(violations))
        with self._arrived:
            self._requests.append(request)
            self._violations.extend(violations)
            self._arrived.notify_all()
        return request

    def _next_action(self, request: RecordedRequest) -> Action | None:
        if not self.is_send(request):
            return None
        with self._lock:
            return self._script.popleft() if self._script else None

    def _answer(self, request: RecordedRequest, action: Reply | Error | None) -> Response:
        try:
            if isinstance(action, Reply):
                return action.to_response()
            if isinstance(action, Error):
                return self.render_error(action)
            with self._lock:
                return self.handle(request)
        except Exception as exc:  # answer 500 and surface the bug through `violations`
            with self._lock:
                self._violations.append(
                    f"{type(self).__name__} crashed on {request.method} {request.path}: {exc!r}"
                )
            return Response(500, traceback.format_exc().encode(), {"Content-Type": "text/plain"})
