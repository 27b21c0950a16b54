"""FakeTwilio's status callbacks, fetch endpoint and inbound messages, checked as a receiver would.

Signatures are verified with twilio's own `RequestValidator.validate`, over the exact URL received.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import parse_qs

import httpx
import pytest
from twilio.http.http_client import TwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from tests.worker.testing.conftest import Receiver
from worker.testing import FakeTwilio, Receipts
from worker.testing.exchange import RecordedRequest

TO = "+14155550100"
OTHER = "+14155550199"
SENDER = "+15005550006"


@pytest.fixture
def raw_twilio(fake_twilio: FakeTwilio) -> Iterator[httpx.Client]:
    auth = (fake_twilio.account_sid, fake_twilio.auth_token)
    with httpx.Client(base_url=fake_twilio.url, auth=auth, timeout=5) as client:
        yield client


@pytest.fixture
def sdk(fake_twilio: FakeTwilio) -> Iterator[Client]:
    http_client = TwilioHttpClient(timeout=5)
    client = Client(fake_twilio.account_sid, fake_twilio.auth_token, http_client=http_client)
    client.api.base_url = fake_twilio.url
    yield client
    assert http_client.session is not None
    http_client.session.close()


def _status_url(receiver: Receiver) -> str:
    return f"{receiver.url}/v1/webhooks/twilio/twilio-support/status?attempt=1"


def _send(sdk: Client, receiver: Receiver | None, to: str = TO) -> str:
    callback = _status_url(receiver) if receiver is not None else None
    message = sdk.messages.create(to=to, from_=SENDER, body="Your code is 1234", status_callback=callback)
    sid: str = message.sid
    return sid


def _fields(request: RecordedRequest) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(request.body.decode()).items()}


def _valid(fake: FakeTwilio, receiver: Receiver, request: RecordedRequest) -> bool:
    url = receiver.url + request.path + ("?attempt=1" if request.query else "")
    signature = request.headers.get("x-twilio-signature", "")
    return bool(RequestValidator(fake.auth_token).validate(url, _fields(request), signature))


def test_delivered_message_calls_back_sent_then_delivered_signed(
    fake_twilio: FakeTwilio, receiver: Receiver, sdk: Client
) -> None:
    """By default a message reports `sent` then `delivered` (no `queued`), each signed over the exact URL."""
    sid = _send(sdk, receiver)

    callbacks = fake_twilio.wait_for_callbacks(2)
    requests = receiver.wait_for_requests(2)

    assert [c.status for c in callbacks] == ["sent", "delivered"]
    assert [c.response_status for c in callbacks] == [204, 204]
    assert all(_valid(fake_twilio, receiver, r) for r in requests)
    sent, delivered = (_fields(r) for r in requests)
    assert sent["MessageStatus"] == sent["SmsStatus"] == "sent" and "RawDlrDoneDate" not in sent
    assert delivered["MessageSid"] == delivered["SmsSid"] == sid
    assert (delivered["To"], delivered["From"], delivered["ApiVersion"]) == (TO, SENDER, "2010-04-01")
    assert delivered["AccountSid"] == fake_twilio.account_sid
    assert len(delivered["RawDlrDoneDate"]) == 10 and "ErrorCode" not in delivered
    assert requests[0].content_type == "application/x-www-form-urlencoded"
    assert fake_twilio.violations == []


def test_undelivered_carries_the_scripted_error_code_and_fetch_reports_it(
    fake_twilio: FakeTwilio, receiver: Receiver, sdk: Client
) -> None:
    """`Receipts.undelivered(30007)` for one recipient: sent → undelivered + ErrorCode; others unaffected."""
    fake_twilio.receipts_for(TO, Receipts.undelivered(30007))
    sid = _send(sdk, receiver)
    other = _send(sdk, receiver, OTHER)

    fake_twilio.wait_for_callbacks(2, message_id=sid)
    fake_twilio.wait_for_callbacks(2, message_id=other)

    by_sid = {(f := _fields(r))["MessageSid"] + f["MessageStatus"]: f for r in receiver.requests}
    assert by_sid[sid + "undelivered"]["ErrorCode"] == "30007"
    assert "RawDlrDoneDate" in by_sid[sid + "undelivered"]
    assert other + "delivered" in by_sid
    fetched = sdk.messages(sid).fetch()
    assert (fetched.status, fetched.error_code, fetched.error_message) == (
        "undelivered",
        30007,
        "Message filtered",
    )
    assert sdk.messages(other).fetch().status == "delivered"
    assert fake_twilio.violations == []  # the fetch requests and answers match the spec


def test_failed_reports_only_failed(fake_twilio: FakeTwilio, receiver: Receiver, sdk: Client) -> None:
    """A message that never left Twilio reports one `failed` callback with its ErrorCode, no `sent`."""
    fake_twilio.receipts_for(TO, Receipts.failed(30008))
    _send(sdk, receiver)

    [callback] = fake_twilio.wait_for_callbacks(1)
    time.sleep(0.2)

    assert len(receiver.requests) == 1
    assert callback.form()["MessageStatus"] == "failed" and callback.form()["ErrorCode"] == "30008"
    assert "RawDlrDoneDate" not in callback.form()


def test_without_a_status_callback_nothing_is_sent_but_fetch_moves_on(
    fake_twilio: FakeTwilio, receiver: Receiver, sdk: Client
) -> None:
    """No StatusCallback in the request: no callback at all, and polling still sees `delivered`."""
    sid = _send(sdk, None)

    deadline = time.monotonic() + 5
    while sdk.messages(sid).fetch().status != "delivered":
        assert time.monotonic() < deadline, "the message never reached delivered"
        time.sleep(0.02)

    assert fake_twilio.callbacks == [] and receiver.requests == []


def test_never_sends_nothing_although_a_url_was_given(
    fake_twilio: FakeTwilio, receiver: Receiver, sdk: Client
) -> None:
    """`Receipts.never()`: the URL is ignored, the fetch endpoint reports `delivered`."""
    fake_twilio.default_receipts = Receipts.never()
    sid = _send(sdk, receiver)

    deadline = time.monotonic() + 5
    while (message := fake_twilio.message(sid)) is None or message["status"] != "delivered":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(0.1)

    assert receiver.requests == [] and fake_twilio.callbacks == []


def test_out_of_order_sends_the_final_status_first(
    fake_twilio: FakeTwilio, receiver: Receiver, sdk: Client
) -> None:
    """`out_of_order()`: delivered arrives before sent; the fetch still ends at delivered."""
    fake_twilio.receipts_for(TO, Receipts.delivered().out_of_order())
    sid = _send(sdk, receiver)

    fake_twilio.wait_for_callbacks(2)

    assert [_fields(r)["MessageStatus"] for r in receiver.requests] == ["delivered", "sent"]
    assert all(_valid(fake_twilio, receiver, r) for r in receiver.requests)
    assert sdk.messages(sid).fetch().status == "delivered"


def test_twice_duplicates_the_final_callback(
    fake_twilio: FakeTwilio, receiver: Receiver, sdk: Client
) -> None:
    """`twice()`: the final callback comes two times (concurrently), `sent` once."""
    fake_twilio.receipts_for(TO, Receipts.undelivered(30003).twice())
    _send(sdk, receiver)

    fake_twilio.wait_for_callbacks(3)
    time.sleep(0.1)

    statuses = sorted(_fields(r)["MessageStatus"] for r in receiver.requests)
    assert statuses == ["sent", "undelivered", "undelivered"]


def test_before_answer_the_first_callback_is_received_before_the_rest_answer(
    fake_twilio: FakeTwilio, receiver: Receiver, raw_twilio: httpx.Client
) -> None:
    """`before_answer()`: the receiver has answered `sent` before the send's answer leaves the fake."""
    receiver.latency = 0.4  # the receiver answers slowly; an early callback holds the send's answer back
    fake_twilio.receipts_for(TO, Receipts.delivered().before_answer())
    started = time.monotonic()
    answer = raw_twilio.post(
        fake_twilio.messages_path,
        data={"To": TO, "From": SENDER, "Body": "hi", "StatusCallback": _status_url(receiver)},
    )
    answered = time.monotonic()

    assert answer.status_code == 201
    [first, *_] = receiver.wait_for_requests(1)
    assert first.received_at < answered and answered - started >= 0.4
    assert _fields(first)["MessageStatus"] == "sent"


def test_normal_callbacks_never_hold_the_rest_answer(
    fake_twilio: FakeTwilio, receiver: Receiver, raw_twilio: httpx.Client
) -> None:
    """Without `before_answer()`, a slow receiver does not slow down the send's answer."""
    receiver.latency = 0.4
    started = time.monotonic()
    answer = raw_twilio.post(
        fake_twilio.messages_path,
        data={"To": TO, "From": SENDER, "Body": "hi", "StatusCallback": _status_url(receiver)},
    )

    assert answer.status_code == 201 and time.monotonic() - started < 0.4
    fake_twilio.wait_for_callbacks(2)


def test_delayed_callbacks_wait_before_the_first_and_between(
    fake_twilio: FakeTwilio, receiver: Receiver, sdk: Client
) -> None:
    """`delayed(0.3, gap=0.2)`: sent ≥ 0.3 s after the answer, delivered ≥ 0.2 s after sent."""
    fake_twilio.receipts_for(TO, Receipts.delivered().delayed(0.3, gap=0.2))
    started = time.monotonic()
    _send(sdk, receiver)

    sent, delivered = receiver.wait_for_requests(2)

    assert sent.received_at - started >= 0.3 and delivered.received_at - sent.received_at >= 0.2


def test_forged_signature_fails_validation(fake_twilio: FakeTwilio, receiver: Receiver, sdk: Client) -> None:
    """`with_forged_signature()`: well-formed callbacks whose signature RequestValidator rejects."""
    fake_twilio.receipts_for(TO, Receipts.delivered().with_forged_signature())
    _send(sdk, receiver)

    fake_twilio.wait_for_callbacks(2)

    assert [_valid(fake_twilio, receiver, r) for r in receiver.requests] == [False, False]
    assert all(r.headers.get("x-twilio-signature") for r in receiver.requests)


def test_callback_answers_are_recorded(fake_twilio: FakeTwilio, receiver: Receiver, sdk: Client) -> None:
    """What the receiver answered (here 403) is kept on each Callback."""
    receiver.status = 403
    _send(sdk, receiver)

    assert [c.response_status for c in fake_twilio.wait_for_callbacks(2)] == [403, 403]


def test_fetch_requires_auth_and_answers_404_for_unknown_sids(
    fake_twilio: FakeTwilio, raw_twilio: httpx.Client
) -> None:
    """Fetch: Twilio's 20003 without credentials, 20404 for an unknown SID, both in Twilio's error shape."""
    path = fake_twilio.message_path("SM" + "0" * 32)

    unknown = raw_twilio.get(path)
    anonymous = httpx.get(fake_twilio.url + path)

    assert (unknown.status_code, unknown.json()["code"], unknown.json()["status"]) == (404, 20404, 404)
    assert (anonymous.status_code, anonymous.json()["code"]) == (401, 20003)


def test_fetch_reports_queued_right_after_the_send(fake_twilio: FakeTwilio, sdk: Client) -> None:
    """Right after create, before any step, the fetched message is `queued` with no error."""
    fake_twilio.default_receipts = Receipts.delivered().delayed(5)
    sid = _send(sdk, None)

    message = sdk.messages(sid).fetch()

    assert (message.status, message.error_code, message.to) == ("queued", None, TO)
    assert fake_twilio.violations == []


@pytest.mark.parametrize(
    ("body", "opt_out"), [("STOP", "STOP"), (" stop all ", "STOP"), ("Start", "START"), ("help", "HELP")]
)
def test_inbound_keywords_carry_opt_out_type(
    fake_twilio: FakeTwilio, receiver: Receiver, body: str, opt_out: str
) -> None:
    """An inbound keyword gets `OptOutType` as Advanced Opt-Out adds it; the webhook is signed."""
    url = f"{receiver.url}/v1/webhooks/twilio/twilio-support/inbound"
    callback = fake_twilio.send_inbound(url, from_=TO, to=SENDER, body=body)

    [request] = receiver.requests
    fields = _fields(request)
    assert callback.response_status == 204 and callback.kind == "inbound"
    assert (fields["OptOutType"], fields["Body"], fields["From"], fields["To"]) == (opt_out, body, TO, SENDER)
    assert fields["SmsStatus"] == "received" and fields["MessageSid"].startswith("SM")
    signature = request.headers["x-twilio-signature"]
    assert RequestValidator(fake_twilio.auth_token).validate(url, fields, signature)


def test_inbound_plain_text_has_no_opt_out_type(fake_twilio: FakeTwilio, receiver: Receiver) -> None:
    """A message that is not just a keyword ("stop texting me please") gets no OptOutType."""
    url = f"{receiver.url}/inbound"
    fake_twilio.send_inbound(url, from_=TO, to=SENDER, body="stop texting me please")

    assert "OptOutType" not in _fields(receiver.requests[0])
