"""The send policies inside the claim: the opt-out list, per-recipient caps and sender rate limits,
against a real Redis, through `SmsService.handle()` (the sandbox provider, or a fake Twilio)."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import pytest
import redis

from producers.contract import EVENT_FIELD, SANDBOX_OUTBOX_KEY, CallContext, events_key
from producers.jobs import build_job
from worker import optout
from worker.config.models import Connection, SmsConfig
from worker.config.source import StaticConfigSource
from worker.providers import ProviderPool
from worker.service import SmsService
from worker.settings import Settings
from worker.testing.actions import Error
from worker.testing.twilio import FakeTwilio

CALLER = "+14155551234"
SENDER = "+14155550000"
OTHER_SENDER = "+14155550001"
HASH_KEY = "test-number-hash-key"
OPTED_OUT_SENTENCE = (
    "SMS couldn't be sent: that number has opted out of texts; they can text START to opt back in."
)

Entries = list[tuple[bytes, dict[bytes, bytes]]]


@dataclass(frozen=True)
class Inbound:
    """An inbound text as the HTTP service hands it over (`InboundMessage`'s fields)."""

    from_number: str
    to_number: str
    text: str
    keyword_hint: str | None = None
    provider: str = "sandbox"
    connection_id: str = "sandbox"


def config(connection: dict[str, Any] | None = None, **sms: Any) -> SmsConfig:
    agent: dict[str, Any] = {"enabled": True, "connection": "Sandbox", "templates": {"code": "Code {code}"}}
    agent.update(sms)
    sandbox = {"label": "Sandbox", "provider": "sandbox", "default": True, "from_number": SENDER}
    sandbox.update(connection or {})
    return SmsConfig.model_validate(
        {"connections": [sandbox], "agents": {"a1": {"voice_tools": {"sms_mid_call": agent}}}}
    )


class Harness:
    def __init__(self, client: redis.Redis, cfg: SmsConfig, settings: Settings) -> None:
        self.redis = client
        self.config = cfg
        self.settings = settings
        self.pool = ProviderPool(settings, client)
        self.service = SmsService(settings, client, StaticConfigSource(cfg), self.pool, rng=random.Random(1))

    @property
    def connection(self) -> Connection:
        return self.config.connections[0]

    def handle(self, job: dict[str, Any], attempt: int = 1) -> float | None:
        return self.service.handle(job, attempt=attempt, owner=f"w-{attempt}")

    def events(self, call_id: str = "CA1", job_id: str | None = None) -> list[dict[str, Any]]:
        entries = cast(Entries, self.redis.xrange(events_key(call_id)))
        found = [json.loads(fields[EVENT_FIELD.encode()]) for _, fields in entries]
        return [e for e in found if job_id is None or e["job_id"] == job_id]

    def terminal(self, job: dict[str, Any]) -> dict[str, Any]:
        [event] = [e for e in self.events(job["call"]["call_id"], job["job_id"]) if e["terminal"]]
        return event

    def outbox(self) -> int:
        return int(self.redis.xlen(SANDBOX_OUTBOX_KEY))


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return Settings(redis_url=redis_url, number_hash_key=HASH_KEY)


@pytest.fixture
def make(redis_client: redis.Redis, settings: Settings) -> Iterator[Any]:
    made: list[Harness] = []

    def build(connection: dict[str, Any] | None = None, **sms: Any) -> Harness:
        harness = Harness(redis_client, config(connection, **sms), settings)
        made.append(harness)
        return harness

    yield build
    for harness in made:
        harness.pool.close()


def job(call_id: str = "CA1", to: str | None = None, expires_in: float = 300, **extra: Any) -> dict[str, Any]:
    call = CallContext(call_id=call_id, direction="inbound", from_number=CALLER, to_number=SENDER)
    built = build_job(
        agent_id="a1",
        call=call,
        to=to,
        template="code",
        variables={"code": "1"},
        expires_in=expires_in,
        **extra,
    )
    return built.model_dump(mode="json")


# -- opt-out --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "hint", "action"),
    [
        ("STOP", None, "opt_out"), ("stop", None, "opt_out"), ("  Stop. ", None, "opt_out"),
        ("STOPALL", None, "opt_out"), ("stop all", None, "opt_out"), ("UNSUBSCRIBE", None, "opt_out"),
        ("CANCEL", None, "opt_out"), ("END", None, "opt_out"), ("QUIT", None, "opt_out"),
        ("OPTOUT", None, "opt_out"), ("REVOKE", None, "opt_out"),
        ("START", None, "opt_in"), ("unstop", None, "opt_in"), ("Yes", None, "opt_in"),
        ("HELP", None, "help"), ("info", None, "help"),
        ("please stop texting me", None, None), ("Thanks!", None, None), ("", None, None),
        ("Arrêt", "STOP", "opt_out"), ("whatever", "START", "opt_in"),
    ],
)  # fmt: skip
def test_keywords_are_read_from_the_whole_text_or_the_providers_hint(
    text: str, hint: str | None, action: str | None
) -> None:
    """STOP-family words opt out, START/UNSTOP/YES opt in, HELP/INFO ask for help; a sentence that
    merely contains "stop" is not a keyword; Twilio's OptOutType wins over the text."""
    assert optout.keyword(text, hint) == action


def test_an_inbound_stop_refuses_the_next_send_without_a_provider_call_and_start_lets_it_through(
    make: Any, redis_client: redis.Redis, settings: Settings
) -> None:
    """After STOP the next send fails `recipient_opted_out` with the sentence the agent says and
    nothing reaches the provider; after START the following send is accepted."""
    sms = make()
    assert (
        optout.handle_inbound(
            redis_client, sms.connection, Inbound(CALLER, SENDER, "STOP"), settings=settings
        )
        == "opt_out"
    )
    first = job()
    assert sms.handle(first) is None
    failed = sms.terminal(first)
    assert (failed["status"], failed["error"]["code"]) == ("failed", "recipient_opted_out")
    assert failed["tool_message"] == OPTED_OUT_SENTENCE
    assert [e["status"] for e in sms.events(job_id=first["job_id"])] == ["failed"]  # no `sending`
    assert sms.outbox() == 0

    assert (
        optout.handle_inbound(
            redis_client, sms.connection, Inbound(CALLER, SENDER, "start"), settings=settings
        )
        == "opt_in"
    )
    second = job()
    sms.handle(second)
    assert sms.terminal(second)["status"] == "accepted"
    assert sms.outbox() == 1


def test_the_list_holds_a_keyed_hash_the_masked_number_when_and_why_never_the_number(
    make: Any, redis_client: redis.Redis, settings: Settings
) -> None:
    """An opt-out is stored under the number's HMAC; the entry has the masked number, the time
    and the reason; the number itself is nowhere in Redis."""
    sms = make()
    optout.record(redis_client, sms.connection, CALLER, reason="cli", settings=settings)
    raw = {
        k.decode(): v.decode()
        for k, v in cast(dict[bytes, bytes], redis_client.hgetall("sms:optout:sandbox")).items()
    }
    [(field, value)] = raw.items()
    assert field.startswith(f"{SENDER}|") and len(field.split("|")[1]) == 32
    entry = json.loads(value)
    assert entry["number"] == "+1415****234" and entry["reason"] == "cli"
    assert datetime.fromisoformat(entry["at"]).tzinfo is not None
    for key in redis_client.scan_iter("sms:*"):
        assert CALLER.encode() not in key
    assert [e.number for e in optout.entries(redis_client, sms.connection)] == ["+1415****234"]


def test_number_scope_opts_out_of_one_sending_number_connection_scope_of_all(
    make: Any, redis_client: redis.Redis, settings: Settings
) -> None:
    """With `opt_out_scope: number` a STOP to one number leaves the connection's other numbers
    free; with `connection` it covers them all."""
    per_number = make()
    optout.handle_inbound(
        redis_client, per_number.connection, Inbound(CALLER, OTHER_SENDER, "STOP"), settings=settings
    )
    assert optout.check(redis_client, per_number.connection, CALLER, sender=OTHER_SENDER, settings=settings)
    assert optout.check(redis_client, per_number.connection, CALLER, sender=SENDER, settings=settings) is None
    first = job()
    per_number.handle(first)
    assert per_number.terminal(first)["status"] == "accepted"  # sent from SENDER, not OTHER_SENDER

    whole = make({"opt_out_scope": "connection"})
    optout.handle_inbound(
        redis_client, whole.connection, Inbound(CALLER, OTHER_SENDER, "STOP"), settings=settings
    )
    second = job()
    whole.handle(second)
    assert whole.terminal(second)["error"]["code"] == "recipient_opted_out"


def test_a_twilio_21610_adds_the_number_to_the_list(redis_client: redis.Redis, settings: Settings) -> None:
    """Twilio refuses with 21610 (the recipient replied STOP to Twilio): the number goes on the local
    list, and the next send is refused locally, with no second request to Twilio."""
    with FakeTwilio(account_sid="AC" + "0" * 32, auth_token="tok") as twilio:
        cfg = SmsConfig.model_validate(
            {
                "connections": [{
                    "label": "Twilio", "provider": "twilio", "from_number": "+15005550006",
                    "api_base_url": twilio.url,
                    "credentials": {"account_sid": twilio.account_sid, "auth_token": "tok"},
                }],
                "agents": {"a1": {"voice_tools": {"sms_mid_call": {
                    "enabled": True, "connection": "Twilio", "templates": {"code": "Code {code}"}}}}},
            }
        )  # fmt: skip
        sms = Harness(redis_client, cfg, settings)
        twilio.script(Error(21610, status=400))
        first, second = job(), job(call_id="CA2")
        sms.handle(first)
        assert sms.terminal(first)["error"]["provider_code"] == "21610"
        [entry] = optout.entries(redis_client, sms.connection)
        assert (entry.number, entry.sender, entry.reason) == ("+1415****234", "+15005550006", "twilio 21610")
        sms.handle(second)
        refused = sms.terminal(second)
        assert refused["error"]["code"] == "recipient_opted_out"
        assert refused["error"].get("provider_code") is None  # refused by us, not by Twilio
        assert len(twilio.requests) == 1
        sms.pool.close()


# -- per-recipient caps ---------------------------------------------------------------------------


def test_the_per_recipient_cap_holds_across_calls(make: Any) -> None:
    """`max_per_recipient: {count: 2}`: two texts on one call and a third on another call to the
    same number: the third fails `limit_reached` with its own sentence; another number is free."""
    sms = make(max_per_recipient={"count": 2, "window_seconds": 3600}, recipient_policy="any")
    jobs = [job("CA1"), job("CA1"), job("CA2")]
    for j in jobs:
        sms.handle(j)
    assert [sms.terminal(j)["status"] for j in jobs] == ["accepted", "accepted", "failed"]
    third = sms.terminal(jobs[2])
    assert third["error"]["code"] == "limit_reached" and third["error"]["cause"] == "recipient"
    assert third["tool_message"] == (
        "SMS couldn't be sent: that number has already had the most texts allowed for now; try again later."
    )
    other = job("CA3", to="+14155559876")
    sms.handle(other)
    assert sms.terminal(other)["status"] == "accepted"


def test_a_refused_send_gives_its_place_under_the_recipient_cap_back(make: Any) -> None:
    """A send refused after the cap counted it (here the call's own cap) does not use the recipient's."""
    sms = make(max_per_recipient={"count": 1, "window_seconds": 3600}, max_per_call=0)
    refused = job("CA1")
    sms.handle(refused)
    assert sms.terminal(refused)["error"]["code"] == "limit_reached"
    unlimited = make(max_per_recipient={"count": 1, "window_seconds": 3600})
    ok = job("CA2")
    unlimited.handle(ok)
    assert unlimited.terminal(ok)["status"] == "accepted"


def test_the_recipient_cap_window_slides(make: Any) -> None:
    """Once the window has passed, the recipient may be texted again."""
    sms = make(max_per_recipient={"count": 1, "window_seconds": 1})
    first, second, third = job("CA1"), job("CA2"), job("CA3")
    sms.handle(first)
    sms.handle(second)
    assert sms.terminal(second)["error"]["code"] == "limit_reached"
    time.sleep(1.05)
    sms.handle(third)
    assert sms.terminal(third)["status"] == "accepted"


# -- sender rate limits ---------------------------------------------------------------------------


def test_a_send_over_the_rate_is_scheduled_for_its_slot_and_sent_there(make: Any) -> None:
    """At 1 message/s the second send at once is `retrying` (`rate_limited`, `next_attempt_at` about
    1 s on) and held; handled again at its slot it is sent."""
    sms = make({"messages_per_second": 1})
    first, second = job("CA1"), job("CA2")
    assert sms.handle(first) is None
    delay = sms.handle(second)
    assert delay is not None and 0.5 < delay <= 1.0
    [retrying] = sms.events("CA2")
    assert retrying["status"] == "retrying"
    assert retrying["error"]["code"] == "rate_limited" and retrying["error"]["cause"] == "sender"
    assert "next_attempt_at" in retrying
    assert retrying["tool_message"] == "SMS not sent yet: it is waiting for its turn on the sending number."
    assert sms.outbox() == 1
    time.sleep(delay)
    assert sms.handle(second, attempt=2) is None
    assert sms.terminal(second)["status"] == "accepted"
    assert sms.outbox() == 2


def test_a_slot_after_the_deadline_fails_at_once_and_reserves_nothing(make: Any) -> None:
    """With a 1 s deadline the slot 1 s away is too late: `failed` / `rate_limited` at once, with the
    sentence about this number; the refused send took no slot (the next one with time is 1 s on)."""
    sms = make({"messages_per_second": 1})
    sms.handle(job("CA1"))
    late = job("CA2", expires_in=1.0)
    assert sms.handle(late) is None
    failed = sms.terminal(late)
    assert (failed["status"], failed["error"]["code"]) == ("failed", "rate_limited")
    assert failed["tool_message"] == (
        "SMS couldn't be sent: too many texts are waiting on this number right now."
    )
    delay = sms.handle(job("CA3"))
    assert delay is not None and delay <= 1.0  # the first free slot, not a second one


def test_the_burst_lets_that_many_leave_at_once(make: Any) -> None:
    """`burst: 3` at 1/s: three sends go at once, the fourth waits about a second."""
    sms = make({"messages_per_second": 1, "burst": 3})
    delays = [sms.handle(job(f"CA{i}")) for i in range(4)]
    assert delays[:3] == [None, None, None]
    assert delays[3] is not None and 0.5 < delays[3] <= 1.0


def test_a_per_number_rate_overrides_the_connections(make: Any) -> None:
    """`number_rates` for the sending number wins over the connection's rate."""
    sms = make({"messages_per_second": 1, "number_rates": {SENDER: {"messages_per_second": 50, "burst": 5}}})
    assert [sms.handle(job(f"CA{i}")) for i in range(5)] == [None] * 5


def test_the_benchmarks_config_is_valid_with_every_policy_on(tmp_path: Any) -> None:
    """The benchmark's workers load its config: every policy on (a sender rate, a recipient cap),
    within the models' bounds, none of them binding at the benchmark's load."""
    from worker.bench import workload
    from worker.config.crypto import Crypto
    from worker.config.loader import load_file

    path = workload.write_config(
        tmp_path / "bench.yaml", fast_url="http://127.0.0.1:1", slow_url="http://127.0.0.1:2"
    )
    loaded = load_file(path, crypto=Crypto([]))
    assert all(c.messages_per_second and c.messages_per_second >= 1000 for c in loaded.connections)
    assert all(
        a.sms.max_per_recipient and a.sms.max_per_recipient.count >= 10_000 for a in loaded.agents.values()
    )
