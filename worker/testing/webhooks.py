"""Provider webhooks sent by the fakes: status callbacks scripted per recipient, and inbound messages.

    twilio.receipts_for("+14155550100", Receipts.undelivered(30007))          # sent → undelivered
    twilio.receipts_for("+14155550101", Receipts.delivered().twice().out_of_order())
    twilio.default_receipts = Receipts.never()                                # everyone else: no callbacks
    ...send with StatusCallback=https://…/status...
    [sent, final] = twilio.wait_for_callbacks(2)
    assert final.response_status == 204 and final.form()["MessageStatus"] == "undelivered"

A message accepted by a fake moves through its provider's statuses on the fake's own event loop (the
REST answer never waits for that, unless `early` says so), and each step is also what the status GET
endpoint reports from then on. When the send request carried a callback URL (Twilio `StatusCallback`,
Plivo `url` + `method`, Telnyx `webhook_url`), each step is also sent there, signed the way the provider
signs; without a URL nothing is sent. Every callback sent is kept as a `Callback`, with the receiver's
answer (`response_status`), so a test can wait for them and see how they were received.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import dataclasses
import json as jsonlib
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Self, TypeAlias, Unpack
from urllib.parse import parse_qs, urlsplit

import httpx

from worker.testing.server import FakeServer, ServerOptions

Outcome: TypeAlias = Literal["delivered", "undelivered", "failed", "unconfirmed"]
"""How a message ends: `delivered`; `undelivered` (left the provider, the carrier refused it); `failed`
(never left the provider); `unconfirmed` (Telnyx `delivery_unconfirmed`; Twilio and Plivo stay `sent`)."""

MAX_MESSAGES = 20_000
"""The newest messages a fake keeps for its status GET endpoint (older ones answer 404): a few KiB
each, so a long benchmark run stays within tens of MiB."""


@dataclass(frozen=True, slots=True)
class Receipts:
    """The status callbacks of one message, from the send's answer on. Build with the class methods and
    chain the modifiers: `Receipts.undelivered(30007).delayed(0.5).twice()`.

    `code` is the provider's delivery error code for `undelivered`/`failed` (None: the fake's default,
    see each fake's `DEFAULT_CODES`). `delay` is seconds before the first callback, `gap` seconds
    between callbacks. `duplicate` sends the final callback twice, byte for byte, concurrently.
    `reverse` sends the callbacks last first (the final status before `sent`). `early` sends the first
    callback, and waits for the receiver's answer, before the REST answer to the send is written.
    `silent` sends nothing (the status still moves on, so the GET endpoint reports it). `forged` signs
    with a wrong key; `stale` (Telnyx) stamps the callback 10 minutes in the past, signed correctly.
    """

    outcome: Outcome = "delivered"
    code: int | None = None
    delay: float = 0.0
    gap: float = 0.0
    duplicate: bool = False
    reverse: bool = False
    early: bool = False
    silent: bool = False
    forged: bool = False
    stale: bool = False

    @classmethod
    def delivered(cls) -> Self:
        """sent → delivered (the default for every recipient)."""
        return cls("delivered")

    @classmethod
    def undelivered(cls, code: int | None = None) -> Self:
        """sent → undelivered with the provider's error `code` (Twilio 30007, Plivo 30, Telnyx 40002…)."""
        return cls("undelivered", code)

    @classmethod
    def failed(cls, code: int | None = None) -> Self:
        """failed with `code`: the provider could not send it at all (no `sent` before)."""
        return cls("failed", code)

    @classmethod
    def unconfirmed(cls) -> Self:
        """Telnyx: sent → finalized `delivery_unconfirmed`; Twilio, Plivo: `sent` and nothing final."""
        return cls("unconfirmed")

    @classmethod
    def never(cls) -> Self:
        """Delivered, but no callback ever comes (polling the status GET endpoint finds `delivered`)."""
        return cls("delivered", silent=True)

    def delayed(self, seconds: float, gap: float | None = None) -> Self:
        """The first callback `seconds` after the answer; `gap` seconds between the following ones."""
        return dataclasses.replace(self, delay=seconds, gap=self.gap if gap is None else gap)

    def twice(self) -> Self:
        """The final callback arrives twice, both at once."""
        return dataclasses.replace(self, duplicate=True)

    def out_of_order(self) -> Self:
        """The callbacks arrive last first: the final status before `sent` (Plivo: before `queued`)."""
        return dataclasses.replace(self, reverse=True)

    def before_answer(self) -> Self:
        """The first callback is received before the REST answer to the send is written."""
        return dataclasses.replace(self, early=True)

    def with_forged_signature(self) -> Self:
        """Every callback carries a signature made with the wrong secret."""
        return dataclasses.replace(self, forged=True)

    def with_stale_timestamp(self) -> Self:
        """Telnyx: every callback is stamped 600 s ago (the receiver must refuse it; > 300 s)."""
        return dataclasses.replace(self, stale=True)


@dataclass(frozen=True, slots=True)
class Webhook:
    """One HTTP request a fake sends to a customer's URL (the URL carries the query, if any)."""

    url: str
    method: str
    headers: Mapping[str, str]
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class Callback:
    """A webhook a fake sent, and how the receiver answered it (`response_status` None: no answer)."""

    kind: Literal["status", "inbound"]
    message_id: str
    status: str  # the provider status it reported (Telnyx: `to[].status`), or "received" for inbound
    url: str
    method: str
    headers: Mapping[str, str]
    body: bytes
    sent_at: float  # time.monotonic() just before sending
    response_status: int | None = None
    error: str | None = None

    def form(self) -> dict[str, str]:
        """The form fields (POST body, or the query of a GET)."""
        raw = self.body.decode() if self.method == "POST" else urlsplit(self.url).query
        return {name: values[0] for name, values in parse_qs(raw, keep_blank_values=True).items()}

    def json(self) -> Any:
        """The JSON body, decoded."""
        return jsonlib.loads(self.body)


@dataclass(frozen=True, slots=True)
class Target:
    """Where a message's status callbacks go, as the send request said."""

    url: str
    method: str = "POST"


@dataclass(slots=True)
class _Run:
    message_id: str
    target: Target | None
    receipts: Receipts
    steps: list[tuple[str, int | None]]
    gate: asyncio.Event | None = None
    done: list[Callback] = field(default_factory=list)


class WebhookFake(FakeServer):
    """A fake provider that calls back: scripts per recipient, the callbacks sent, inbound delivery.

    Subclasses say which statuses an outcome goes through (`receipt_steps`), how a step changes the
    stored message (`set_status`), and how the provider words and signs a callback (`status_webhook`).
    """

    callback_timeout: float = 10.0
    """Seconds a fake waits for a webhook receiver's answer."""

    def __init__(self, **options: Unpack[ServerOptions]) -> None:
        super().__init__(**options)
        self.default_receipts = Receipts()
        self._receipts: dict[str, Receipts] = {}
        self._callbacks: deque[Callback] = deque(maxlen=options.get("max_recorded"))
        self._called_back = threading.Condition(self._lock)
        self._http: httpx.AsyncClient | None = None

    # -- what tests script and read ----------------------------------------------------------------
    def receipts_for(self, number: str, receipts: Receipts) -> None:
        """Script the callbacks of every later message to `number` (with or without its `+`)."""
        with self._lock:
            self._receipts[_digits(number)] = receipts

    @property
    def callbacks(self) -> list[Callback]:
        """The webhooks sent so far (status and inbound), in the order their answers came back."""
        with self._lock:
            return list(self._callbacks)

    def wait_for_callbacks(
        self, count: int, timeout: float = 10.0, *, message_id: str | None = None
    ) -> list[Callback]:
        """Block until `count` webhooks (of `message_id`, if given) were answered or failed."""

        def matching() -> list[Callback]:
            return [c for c in self._callbacks if message_id is None or c.message_id == message_id]

        with self._called_back:
            if not self._called_back.wait_for(lambda: len(matching()) >= count, timeout):
                raise TimeoutError(f"{len(matching())} of {count} callbacks after {timeout} s")
            return matching()

    def on_reset(self) -> None:
        self.default_receipts = Receipts()
        self._receipts.clear()
        self._callbacks.clear()

    async def on_close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    # -- provider hooks ----------------------------------------------------------------------------
    @abc.abstractmethod
    def receipt_steps(self, receipts: Receipts) -> list[tuple[str, int | None]]:
        """The (status, error code) steps after the send's own status, in the provider's order."""

    @abc.abstractmethod
    def set_status(self, message_id: str, status: str, code: int | None) -> None:
        """Move the stored message to `status` (called holding `self._lock`)."""

    @abc.abstractmethod
    def status_webhook(
        self, message_id: str, status: str, code: int | None, target: Target, receipts: Receipts
    ) -> Webhook:
        """The signed callback reporting `status` (called holding `self._lock`)."""

    # -- for handle() and inbound helpers -----------------------------------------------------------
    def schedule_receipts(self, message_id: str, to: str, target: Target | None) -> None:
        """From `handle()`, after accepting a message: run its scripted statuses on the fake's loop."""
        receipts = self._receipts.get(_digits(to), self.default_receipts)
        run = _Run(message_id, target, receipts, self.receipt_steps(receipts))
        if receipts.early and target is not None and not receipts.silent and run.steps:
            run.gate = asyncio.Event()
            self.hold_answer(run.gate)
        self.background(self._play(run))

    def deliver(
        self, kind: Literal["status", "inbound"], message_id: str, status: str, hook: Webhook
    ) -> Callback:
        """Send `hook` from the fake's loop and wait for the answer (from a test thread)."""
        callback: Callback = self.run_on_loop(
            self._post_webhook(kind, message_id, status, hook), self.callback_timeout + 5
        )
        return callback

    async def _play(self, run: _Run) -> None:
        try:
            shown = list(reversed(run.steps)) if run.receipts.reverse else list(run.steps)
            final = run.steps[-1] if run.steps else None
            for index, (state, report) in enumerate(zip(run.steps, shown, strict=True)):
                pause = run.receipts.gap if index else (0.0 if run.gate else run.receipts.delay)
                if pause > 0:
                    await asyncio.sleep(pause)
                with self._lock:
                    self.set_status(run.message_id, *state)
                if run.target is not None and not run.receipts.silent:
                    copies = 2 if run.receipts.duplicate and report == final else 1
                    with self._lock:
                        hook = self.status_webhook(run.message_id, *report, run.target, run.receipts)
                    await asyncio.gather(
                        *(
                            self._post_webhook("status", run.message_id, report[0], hook)
                            for _ in range(copies)
                        )
                    )
                if run.gate is not None:
                    run.gate.set()
        except Exception as exc:  # a bug in the fake: make the test see it
            with self._lock:
                self._violations.append(f"{type(self).__name__} receipts of {run.message_id} failed: {exc!r}")
        finally:
            if run.gate is not None:
                run.gate.set()

    async def _post_webhook(
        self, kind: Literal["status", "inbound"], message_id: str, status: str, hook: Webhook
    ) -> Callback:
        if self._http is None:
            # trust_env=False: no proxy from the environment between a fake and a 127.0.0.1 receiver.
            self._http = httpx.AsyncClient(timeout=self.callback_timeout, trust_env=False)
        record = Callback(
            kind, message_id, status, hook.url, hook.method, dict(hook.headers), hook.body, time.monotonic()
        )
        try:
            response = await self._http.request(
                hook.method, hook.url, headers=dict(hook.headers), content=hook.body or None
            )
            record = dataclasses.replace(record, response_status=response.status_code)
        except httpx.HTTPError as exc:
            record = dataclasses.replace(record, error=f"{type(exc).__name__}: {exc}")
        with self._called_back:
            self._callbacks.append(record)
            self._called_back.notify_all()
        return record


def _digits(number: str) -> str:
    """The number without a channel prefix or `+` ("whatsapp:+1415…" and "1415…" are one recipient)."""
    return number.rpartition(":")[2].lstrip("+")


class MessageStore:
    """The newest `MAX_MESSAGES` messages of a fake, by id (a plain dict per message, for its GET)."""

    def __init__(self) -> None:
        self._messages: dict[str, dict[str, Any]] = {}

    def add(self, message_id: str, message: dict[str, Any]) -> None:
        self._messages[message_id] = message
        if len(self._messages) > MAX_MESSAGES:
            with contextlib.suppress(StopIteration):
                del self._messages[next(iter(self._messages))]

    def get(self, message_id: str) -> dict[str, Any] | None:
        return self._messages.get(message_id)

    def clear(self) -> None:
        self._messages.clear()
