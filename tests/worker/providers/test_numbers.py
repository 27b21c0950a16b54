"""Each provider's `list_numbers()` against its fake: every page read, capabilities mapped, auth
failures in the send taxonomy without a secret; the sender checks and which senders a connection's
agents use."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from producers.contract import ErrorCode
from worker.config.models import Connection, SmsConfig
from worker.errors import SendError
from worker.providers import PROVIDER_CLASSES, OutboundSms, SmsProvider, numbers
from worker.providers.numbers import NumberListing
from worker.providers.plivo import PlivoProvider
from worker.providers.probe import list_numbers
from worker.providers.senders import SenderUse, senders_of
from worker.providers.telnyx import TelnyxProvider
from worker.providers.twilio import TwilioProvider
from worker.testing import FakePlivo, FakeServer, FakeTelnyx, FakeTwilio
from worker.testing.accounts import OwnedNumber
from worker.testing.telnyx import DEFAULT_MESSAGING_PROFILE_ID

VOICE_ONLY = "+14155550009"
MISSING = "+14155550123"
WRONG_SECRET = "wrong-secret-5e1f"


def many(count: int) -> list[OwnedNumber]:
    """`count` SMS-capable numbers, then one voice-only number."""
    return [OwnedNumber(f"+1415666{i:04d}", name=f"line {i}") for i in range(count)] + [
        OwnedNumber.voice_only(VOICE_ONLY, name="IVR")
    ]


@pytest.fixture(scope="module")
def twilio() -> Iterator[FakeTwilio]:
    with FakeTwilio() as fake:
        yield fake


@pytest.fixture(scope="module")
def plivo() -> Iterator[FakePlivo]:
    with FakePlivo() as fake:
        yield fake


@pytest.fixture(scope="module")
def telnyx() -> Iterator[FakeTelnyx]:
    with FakeTelnyx() as fake:
        yield fake


def connection_to(fake: FakeServer, *, secret: str | None = None, **extra: Any) -> Connection:
    """A connection to `fake` with its credentials (or `secret` in place of the token / key)."""
    if isinstance(fake, FakeTwilio):
        credentials = {"account_sid": fake.account_sid, "auth_token": secret or fake.auth_token}
        provider = "twilio"
    elif isinstance(fake, FakePlivo):
        credentials = {"auth_id": fake.auth_id, "auth_token": secret or fake.auth_token}
        provider = "plivo"
    else:
        assert isinstance(fake, FakeTelnyx)
        credentials = {"api_key": secret or fake.api_key, **extra.pop("credentials", {})}
        provider = "telnyx"
    return Connection.model_validate(
        {"label": "L", "provider": provider, "credentials": credentials, "api_base_url": fake.url, **extra}
    )


@pytest.fixture(params=["twilio", "plivo", "telnyx"])
def fake(request: pytest.FixtureRequest) -> Iterator[FakeServer]:
    server: FakeServer = request.getfixturevalue(request.param)
    saved = server.numbers  # type: ignore[attr-defined]
    server.reset()
    yield server
    server.numbers = saved  # type: ignore[attr-defined]
    assert server.violations == [], "a list request broke the provider's contract"


def listing_of(fake: FakeServer) -> NumberListing:
    result = list_numbers(connection_to(fake), timeout=5.0)
    assert result.error is None and result.listing is not None, result
    return result.listing


# -- listing --------------------------------------------------------------------------------------


def test_every_page_is_read_and_each_number_keeps_its_capabilities_and_name(fake: FakeServer) -> None:
    """An account with more numbers than one page (Twilio 100, Plivo 20, Telnyx 100 per page) is
    listed whole, in order, E.164 with `+` (Plivo sends none), the voice-only number not SMS-capable."""
    fake.numbers = tuple(many(230))  # type: ignore[attr-defined]
    listing = listing_of(fake)

    assert [n.number for n in listing.numbers] == [n.number for n in many(230)]
    assert not listing.truncated
    first, voice = listing.numbers[0], listing.numbers[-1]
    assert (first.sms, first.mms, first.voice, first.name) == (True, True, True, "line 0")
    assert (voice.sms, voice.mms, voice.voice, voice.name) == (False, False, True, "IVR")
    assert len(listing.sms_capable) == 230
    pages = {"twilio": 3, "plivo": 12, "telnyx": 6}  # Telnyx: 3 pages of each of its two lists
    provider = type(fake).__name__.removeprefix("Fake").lower()
    print(f"{provider}: 231 numbers in {len(fake.requests)} requests")
    assert len(fake.requests) == pages[provider]


def test_a_listing_stops_at_the_bound_and_says_so(fake: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """More numbers than `MAX_NUMBERS`: the first ones are kept and the listing is marked truncated."""
    for module in ("twilio", "plivo", "telnyx"):
        monkeypatch.setattr(f"worker.providers.{module}.MAX_NUMBERS", 25)
    fake.numbers = tuple(many(60))  # type: ignore[attr-defined]
    listing = listing_of(fake)
    assert len(listing.numbers) == 25 and listing.truncated
    check = PROVIDER_CLASSES[listing_provider(fake)].check_sender(
        connection_to(fake), listing, many(60)[40].number
    )
    assert (check.ok, check.reason) == (False, "not among the first 25 numbers")


def listing_provider(fake: FakeServer) -> str:
    return type(fake).__name__.removeprefix("Fake").lower()


def test_the_sender_check_names_what_is_wrong(fake: FakeServer) -> None:
    """A number on the account that can send SMS passes; a voice-only one and one missing from the
    account fail, each with its reason."""
    fake.numbers = tuple(many(2))  # type: ignore[attr-defined]
    connection = connection_to(fake)
    listing = listing_of(fake)
    provider = PROVIDER_CLASSES[connection.provider]
    checks = {
        n: provider.check_sender(connection, listing, n) for n in (many(2)[0].number, VOICE_ONLY, MISSING)
    }
    assert {n: (c.ok, c.reason) for n, c in checks.items()} == {
        many(2)[0].number: (True, "on the account, SMS-capable"),
        VOICE_ONLY: (False, "on the account but not SMS-capable (voice only)"),
        MISSING: (False, "not on the account"),
    }


def test_an_auth_failure_is_auth_failed_in_the_providers_shape_and_without_the_secret(
    fake: FakeServer,
) -> None:
    """Wrong credentials: the fake answers 401 in its provider's error shape, `list_numbers` reports
    auth_failed, and neither the wrong nor the right secret appears in what it says."""
    result = list_numbers(connection_to(fake, secret=WRONG_SECRET), timeout=5.0)
    assert result.listing is None and result.error is not None
    assert result.error.outcome == "auth_failed"
    provider = listing_provider(fake)
    assert result.error.detail.startswith(f"{provider} answered 401")
    for secret in (WRONG_SECRET, getattr(fake, "auth_token", None), getattr(fake, "api_key", None)):
        assert secret is None or secret not in result.error.detail
    shapes = {
        "twilio": {"code", "message", "more_info", "status"},
        "plivo": {"api_id", "error"},
        "telnyx": {"errors"},
    }
    request = fake.requests[0]
    with httpx.Client(base_url=fake.url) as raw:
        answer = raw.get(request.path, params=dict(request.query))  # no credentials at all
    assert answer.status_code == 401
    assert set(answer.json()) == shapes[provider]
    fake.reset()  # the unauthenticated request broke the contract on purpose


def test_an_unreachable_provider_is_provider_unavailable(fake: FakeServer) -> None:
    """Nothing listening at the connection's URL: provider_unavailable, no traceback."""
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    connection = connection_to(fake).model_copy(update={"api_base_url": f"http://127.0.0.1:{port}"})
    result = list_numbers(connection, timeout=2.0)
    assert result.error is not None and result.error.outcome == "provider_unavailable"


def test_telnyx_reports_the_messaging_profile_and_checks_a_connection_bound_to_one(
    telnyx: FakeTelnyx,
) -> None:
    """Telnyx numbers carry their messaging profile; a number on no profile cannot send SMS, and a
    connection that names a profile may only send from that profile's numbers (Telnyx: 40305)."""
    other = "8f9b6c1e-0000-4000-8000-000000000001"
    telnyx.numbers = (
        OwnedNumber("+18445550001", name="Support"),
        OwnedNumber("+18445550002", messaging_profile_id=other),
        OwnedNumber("+18445550003", sms=False, mms=False),
    )
    try:
        listing = listing_of(telnyx)
        first, second, third = listing.numbers
        assert (first.messaging_profile_id, first.messaging_profile_name) == (
            DEFAULT_MESSAGING_PROFILE_ID,
            "Fake messaging profile",
        )
        assert (first.status, first.name, second.messaging_profile_id) == ("active", "Support", other)
        assert (third.sms, third.voice, third.messaging_profile_id) == (False, True, None)
        bound = connection_to(telnyx, credentials={"messaging_profile_id": DEFAULT_MESSAGING_PROFILE_ID})
        provider = PROVIDER_CLASSES["telnyx"]
        assert provider.check_sender(bound, listing, "+18445550001").ok
        check = provider.check_sender(bound, listing, "+18445550002")
        assert (check.ok, check.reason) == (False, "on the account but on another messaging profile")
        assert not provider.requires_sender(bound)  # the profile's number pool picks one
    finally:
        telnyx.numbers = (OwnedNumber("+18445550001"),)
    assert telnyx.violations == []


def test_plivo_follows_next_only_on_its_own_host() -> None:
    """A `meta.next` pointing at another host is not followed (the credentials would go with it)."""
    answers = iter(
        [
            {"meta": {"next": "https://evil.example/v1/Account/MA1/Number/?offset=20"}, "objects": []},
        ]
    )

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.host == "api.example"
        return httpx.Response(200, json=next(answers))

    connection = Connection.model_validate(
        {
            "label": "L",
            "provider": "plivo",
            "credentials": {"auth_id": "MA1", "auth_token": "t0ken-secret"},
            "api_base_url": "https://api.example",
        }
    )
    with httpx.Client(transport=httpx.MockTransport(handler)) as http:
        result = list_numbers(connection, timeout=1.0, http=http)
    assert result.error is not None and result.error.outcome == "provider_error"
    assert "another host" in result.error.detail


def test_an_api_that_keeps_answering_next_is_read_a_bounded_number_of_times() -> None:
    """Empty pages that always name a next page: reading stops after `MAX_PAGES` requests."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"meta": {"next": "/v1/Account/MA1/Number/?offset=0"}, "objects": []})

    connection = Connection.model_validate(
        {"label": "L", "provider": "plivo", "credentials": {"auth_id": "MA1", "auth_token": "t"}}
    )
    with httpx.Client(transport=httpx.MockTransport(handler)) as http:
        result = list_numbers(connection, timeout=1.0, http=http)
    assert result.listing is not None and result.listing.truncated
    assert len(seen) == numbers.MAX_PAGES


def test_the_sandbox_lists_its_documented_number_and_sends_from_any() -> None:
    """The sandbox lists +15005550006 and accepts every sender; a custom endpoint says it has no list."""
    sandbox = Connection(label="S", provider="sandbox")
    result = list_numbers(sandbox, timeout=1.0)
    assert result.listing is not None
    assert [n.number for n in result.listing.numbers] == ["+15005550006"]
    assert result.listing.note == "the sandbox sends from any number"
    assert PROVIDER_CLASSES["sandbox"].check_sender(sandbox, result.listing, MISSING).ok
    custom = Connection(label="C", provider="custom", custom_api_url="https://gw.example/sms")
    unsupported = list_numbers(custom, timeout=1.0)
    assert unsupported.listing is None and unsupported.error is None
    assert unsupported.unsupported == (
        "a custom endpoint has no list of numbers: it sends from whatever number it uses"
    )


# -- which senders a connection serves ----------------------------------------------------------------


def agent(**sms: Any) -> dict[str, Any]:
    return {"voice_tools": {"sms_mid_call": {"enabled": True, **sms}}}


def test_senders_follow_the_workers_precedence() -> None:
    """The connection's own number; an agent's own number when it sends through the connection by
    label or as the provider's default; the connection's number for a fallback — merged by number."""
    config = SmsConfig.model_validate(
        {
            "connections": [
                {"label": "Main", "provider": "sandbox", "default": True, "from_number": "+14155550000"},
                {"label": "Spare", "provider": "sandbox", "from_number": "+14155550005"},
                {"label": "Bare", "provider": "sandbox"},
            ],
            "agents": {
                "a_label": agent(connection="Main"),
                "b_own": agent(connection="Main", from_number="+14155550001"),
                "c_default": agent(provider="sandbox", from_number="+14155550002"),
                "d_other": agent(connection="Spare", fallback_connection="Main"),
                "e_fallback_bare": agent(connection="Spare", fallback_connection="Bare"),
            },
        }
    )
    main, spare, bare = config.connections
    assert senders_of(config, main) == [
        SenderUse("+14155550000", ("connection", "agent a_label", "agent d_other (fallback)")),
        SenderUse("+14155550001", ("agent b_own",)),
        SenderUse("+14155550002", ("agent c_default",)),
    ]
    assert senders_of(config, spare) == [
        SenderUse("+14155550005", ("connection", "agent d_other", "agent e_fallback_bare"))
    ]
    # A fallback without a number of its own sends from the agent's sender.
    assert senders_of(config, bare) == [SenderUse("+14155550005", ("agent e_fallback_bare (fallback)",))]


def test_a_send_from_the_voice_only_number_fails_sender_invalid(fake: FakeServer) -> None:
    """What `connection test` flags is what the provider refuses: a send from the account's
    voice-only number fails `sender_invalid` (Twilio 21606, Plivo 400, Telnyx 40305), one from an
    SMS-capable number is accepted."""
    fake.numbers = tuple(many(1))  # type: ignore[attr-defined]
    connection = connection_to(fake)
    with httpx.Client(timeout=5.0) as http:
        if isinstance(fake, FakeTwilio):
            provider: SmsProvider = TwilioProvider(connection, timeout=5.0)
        elif isinstance(fake, FakePlivo):
            provider = PlivoProvider(connection, http=http)
        else:
            provider = TelnyxProvider(connection, http=http)
        try:
            accepted = provider.send(outbound(many(1)[0].number))
            with pytest.raises(SendError) as refused:
                provider.send(outbound(VOICE_ONLY))
        finally:
            provider.close()
    assert accepted.message_id
    assert refused.value.code == ErrorCode.SENDER_INVALID
    assert VOICE_ONLY not in refused.value.message
    assert [m.sender for m in fake.accepted] == [many(1)[0].number]


def outbound(sender: str) -> OutboundSms:
    return OutboundSms(to="+14155551234", from_=sender, body="hi", job_id="j", idempotency_key=sender)
