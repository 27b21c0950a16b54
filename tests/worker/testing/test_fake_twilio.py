"""FakeTwilio, driven by the real twilio SDK and by raw HTTP."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Iterator

import h11
import httpx
import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from worker.testing import Drop, Error, FakeTwilio, Hang, Response
from worker.testing.twilio import MAGIC_FROM, MAGIC_TO, SPEC_VIOLATION_CODE

GOOD = "+15005550006"  # Twilio's "passes all validation" test number


@pytest.fixture
def sdk(fake_twilio: FakeTwilio) -> Iterator[Client]:
    http_client = TwilioHttpClient(timeout=5)
    client = Client(fake_twilio.account_sid, fake_twilio.auth_token, http_client=http_client)
    client.api.base_url = fake_twilio.url
    yield client
    assert http_client.session is not None
    http_client.session.close()


@pytest.fixture
def raw(fake_twilio: FakeTwilio) -> Iterator[httpx.Client]:
    auth = (fake_twilio.account_sid, fake_twilio.auth_token)
    with httpx.Client(base_url=fake_twilio.url, auth=auth, timeout=5) as client:
        yield client


def _send(raw: httpx.Client, fake: FakeTwilio, **form: str) -> httpx.Response:
    return raw.post(fake.messages_path, data=form)


def test_sdk_gets_a_message_instance_with_the_fake_sid(fake_twilio: FakeTwilio, sdk: Client) -> None:
    """messages.create() through the SDK returns the fake's queued message and records a clean request."""
    message = sdk.messages.create(
        to=GOOD,
        from_=GOOD,
        body="Your code is 1234",
        status_callback="https://example.com/cb",
        validity_period=600,
    )

    [accepted] = fake_twilio.accepted
    assert message.sid == accepted.id and message.sid.startswith("SM") and len(message.sid) == 34
    assert (message.status, message.num_segments, message.to, message.from_) == ("queued", "1", GOOD, GOOD)
    assert message.error_code is None and message.date_created is not None
    [request] = fake_twilio.requests
    assert request.form()["ValidityPeriod"] == "600"
    assert request.headers["user-agent"].startswith("twilio-python/")
    assert fake_twilio.violations == []


def test_messaging_service_sends_are_accepted_without_a_sender(fake_twilio: FakeTwilio, sdk: Client) -> None:
    """With a MessagingServiceSid the message is 'accepted', has no From yet and 0 segments."""
    message = sdk.messages.create(to=GOOD, messaging_service_sid="MG" + "a" * 32, body="x" * 200)

    assert (message.status, message.from_, message.num_segments) == ("accepted", None, "0")
    assert fake_twilio.violations == []


@pytest.mark.parametrize(
    "form",
    [
        {"To": GOOD, "From": GOOD, "Body": "héllo 👍" * 20},
        {"To": GOOD, "MessagingServiceSid": "MG" + "b" * 32, "Body": "hi"},
        {"To": "whatsapp:" + GOOD, "From": "whatsapp:" + GOOD, "MediaUrl": "https://example.com/a.png"},
        {
            "To": GOOD,
            "From": GOOD,
            "Body": "later",
            "ScheduleType": "fixed",
            "SendAt": "2030-01-01T00:00:00Z",
        },
    ],
)
def test_created_message_matches_the_spec_response_schema(
    fake_twilio: FakeTwilio, raw: httpx.Client, form: dict[str, str]
) -> None:
    """The fake's 201 body validates against the spec's `api.v2010.account.message` schema."""
    response = _send(raw, fake_twilio, **form)

    assert response.status_code == 201, response.text
    assert fake_twilio.contract is not None
    answer = Response(response.status_code, response.content, dict(response.headers))
    assert fake_twilio.contract.response_violations(fake_twilio.requests[0], answer) == []
    body = response.json()
    assert body["uri"] == f"{fake_twilio.messages_path[:-5]}/{body['sid']}.json"
    assert body["date_created"].endswith(" +0000") and isinstance(body["num_segments"], str)


@pytest.mark.parametrize(("to", "code"), sorted(MAGIC_TO.items()))
def test_magic_to_numbers_raise_their_error(fake_twilio: FakeTwilio, sdk: Client, to: str, code: int) -> None:
    """Twilio's magic `To` numbers raise TwilioRestException with the documented code and status 400."""
    with pytest.raises(TwilioRestException) as caught:
        sdk.messages.create(to=to, from_=GOOD, body="hi")
    assert (caught.value.code, caught.value.status) == (code, 400)
    assert fake_twilio.accepted == [] and fake_twilio.violations == []


@pytest.mark.parametrize(("sender", "code"), sorted(MAGIC_FROM.items()))
def test_magic_from_numbers_raise_their_error(sdk: Client, sender: str, code: int) -> None:
    """Twilio's magic `From` numbers raise TwilioRestException with the documented code."""
    with pytest.raises(TwilioRestException) as caught:
        sdk.messages.create(to=GOOD, from_=sender, body="hi")
    assert (caught.value.code, caught.value.status) == (code, 400)


def test_owned_numbers_restrict_the_sender() -> None:
    """With owned_numbers, any other From fails with 21606."""
    with (
        FakeTwilio(owned_numbers=["+14155550000"], validate=False) as fake,
        httpx.Client(base_url=fake.url, auth=(fake.account_sid, fake.auth_token)) as client,
    ):
        assert _send(client, fake, To=GOOD, From="+14155550000", Body="hi").status_code == 201
        assert _send(client, fake, To=GOOD, From="+14155550001", Body="hi").json()["code"] == 21606


def test_wrong_credentials_get_401_20003(fake_twilio: FakeTwilio) -> None:
    """A wrong auth token raises TwilioRestException 20003 / 401 with Twilio's legacy error body."""
    http_client = TwilioHttpClient(timeout=5)
    client = Client(fake_twilio.account_sid, "wrong-token", http_client=http_client)
    client.api.base_url = fake_twilio.url
    try:
        with pytest.raises(TwilioRestException) as caught:
            client.messages.create(to=GOOD, from_=GOOD, body="hi")
    finally:
        assert http_client.session is not None
        http_client.session.close()
    assert (caught.value.code, caught.value.status) == (20003, 401)
    assert fake_twilio.violations == []  # credentials were present, just wrong


def test_error_body_has_the_legacy_shape(fake_twilio: FakeTwilio) -> None:
    """Errors carry exactly {code, message, more_info, status}."""
    with httpx.Client(base_url=fake_twilio.url) as client:
        response = client.post(fake_twilio.messages_path, data={"To": GOOD})
    assert response.status_code == 401
    assert response.json() == {
        "code": 20003,
        "message": "Authenticate",
        "more_info": "https://www.twilio.com/docs/errors/20003",
        "status": 401,
    }
    assert any("SecurityValidationError" in v for v in fake_twilio.violations)  # no Authorization at all


def test_another_account_in_the_path_gets_404(fake_twilio: FakeTwilio, raw: httpx.Client) -> None:
    """A well-formed but different AccountSid in the path gets 404 / 20404."""
    response = raw.post("/2010-04-01/Accounts/AC" + "f" * 32 + "/Messages.json", data={"To": GOOD})
    assert (response.status_code, response.json()["code"]) == (404, 20404)


def test_malformed_account_sid_is_a_spec_violation(fake_twilio: FakeTwilio, raw: httpx.Client) -> None:
    """An AccountSid that breaks the spec's pattern is recorded as a violation."""
    response = raw.post(
        "/2010-04-01/Accounts/ACnope/Messages.json", data={"To": GOOD, "From": GOOD, "Body": "x"}
    )
    assert response.status_code == 404
    assert any("AccountSid" in v for v in fake_twilio.violations)


@pytest.mark.parametrize(
    ("form", "code", "violation"),
    [
        ({"From": GOOD, "Body": "hi"}, 21604, "'To' is a required property"),
        ({"To": GOOD, "Body": "hi"}, 21603, None),
        ({"To": GOOD, "From": GOOD}, 21602, None),
        ({"To": GOOD, "From": GOOD, "Body": "x" * 1601}, 21617, None),
        ({"To": "5551234", "From": GOOD, "Body": "hi"}, 21211, None),
        ({"To": GOOD, "From": GOOD, "Body": "hi", "ValidityPeriod": "soon"}, SPEC_VIOLATION_CODE, "integer"),
    ],
)
def test_invalid_creates_get_twilios_400_codes(
    fake_twilio: FakeTwilio, raw: httpx.Client, form: dict[str, str], code: int, violation: str | None
) -> None:
    """Missing or invalid parameters get 400 with Twilio's code; spec breaks are also recorded."""
    response = _send(raw, fake_twilio, **form)

    assert (response.status_code, response.json()["code"]) == (400, code)
    if violation is None:
        assert fake_twilio.violations == []
    else:
        assert any(violation in v for v in fake_twilio.violations), fake_twilio.violations


def test_json_body_is_a_violation(fake_twilio: FakeTwilio, raw: httpx.Client) -> None:
    """Twilio takes forms only: a JSON body is a spec violation and reads as 'no To'."""
    response = raw.post(fake_twilio.messages_path, json={"To": GOOD, "From": GOOD, "Body": "hi"})
    assert response.json()["code"] == 21604
    assert any("application/json" in v for v in fake_twilio.violations)


def test_scripted_429_carries_retry_after(fake_twilio: FakeTwilio, sdk: Client, raw: httpx.Client) -> None:
    """A scripted 20429 reaches the SDK as TwilioRestException 429 and keeps its Retry-After header."""
    fake_twilio.script(*[Error(20429, status=429, headers={"Retry-After": "2"})] * 2)

    with pytest.raises(TwilioRestException) as caught:
        sdk.messages.create(to=GOOD, from_=GOOD, body="hi")
    response = _send(raw, fake_twilio, To=GOOD, From=GOOD, Body="hi")

    assert (caught.value.code, caught.value.status) == (20429, 429)
    assert response.headers["retry-after"] == "2"
    assert response.json()["message"] == "Too Many Requests"
    assert _send(raw, fake_twilio, To=GOOD, From=GOOD, Body="hi").status_code == 201


def test_scripted_500_raises_in_the_sdk(fake_twilio: FakeTwilio, sdk: Client) -> None:
    """A scripted 500 reaches the SDK as TwilioRestException 20500 / 500."""
    fake_twilio.script(Error(20500, status=500))
    with pytest.raises(TwilioRestException) as caught:
        sdk.messages.create(to=GOOD, from_=GOOD, body="hi")
    assert (caught.value.code, caught.value.status) == (20500, 500)


def test_hang_times_out_and_drop_disconnects(fake_twilio: FakeTwilio, raw: httpx.Client) -> None:
    """Hang makes an httpx client time out; Drop makes it raise a connection error."""
    fake_twilio.script(Hang(), Drop())
    with pytest.raises(httpx.TimeoutException):
        raw.post(fake_twilio.messages_path, data={"To": GOOD, "From": GOOD, "Body": "hi"}, timeout=0.3)
    with pytest.raises(httpx.TransportError):
        _send(raw, fake_twilio, To=GOOD, From=GOOD, Body="hi")
    assert fake_twilio.accepted == []


async def _post_form(port: int, path: str, auth: str, body: bytes) -> int:
    """One POST on its own connection, with h11 (httpx's async pool is too slow for this many)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    conn = h11.Connection(h11.CLIENT)
    headers = [
        ("Host", "127.0.0.1"),
        ("Authorization", auth),
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("Content-Length", str(len(body))),
    ]
    try:
        for outgoing in (
            h11.Request(method="POST", target=path, headers=headers),
            h11.Data(data=body),
            h11.EndOfMessage(),
        ):
            writer.write(conn.send(outgoing) or b"")
        status = 0
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await reader.read(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.EndOfMessage):
                return status
    finally:
        writer.close()
        await writer.wait_closed()


async def test_serves_200_concurrent_requests_concurrently() -> None:
    """200 concurrent sends with 0.1 s latency all succeed in far less than 200 × 0.1 s.

    Spec validation is off: it costs ~10 ms of CPU per request, which this test is not about.
    """
    with FakeTwilio(validate=False, latency=0.1) as fake:
        auth = "Basic " + base64.b64encode(f"{fake.account_sid}:{fake.auth_token}".encode()).decode()
        body = b"To=%2B15005550006&From=%2B15005550006&Body=hi"
        started = time.monotonic()
        statuses = await asyncio.gather(
            *(_post_form(fake.port, fake.messages_path, auth, body) for _ in range(200))
        )
        elapsed = time.monotonic() - started

    assert statuses == [201] * 200
    assert len(fake.accepted) == 200
    assert elapsed < 5, f"200 requests took {elapsed:.2f} s"
