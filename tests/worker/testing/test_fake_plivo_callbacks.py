"""FakePlivo's status callbacks, retrieve endpoint and inbound messages, checked as a receiver would.

Signatures are checked with `_sdk_v3_valid` / `_sdk_v2_valid`, written here from plivo-python's
`validate_v3_signature` and `validate_signature` (not from the fake's `signing` module), and that
module is pinned to the SDK's V2 test vector and the V3 base strings of the SDK's algorithm.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Iterator, Mapping
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.worker.testing.conftest import Receiver
from worker.testing import FakePlivo, Receipts
from worker.testing.exchange import RecordedRequest
from worker.testing.signing import plivo_v2, plivo_v3_base

DST = "14155550100"
SRC = "14155550000"


@pytest.fixture
def raw_plivo(fake_plivo: FakePlivo) -> Iterator[httpx.Client]:
    auth = (fake_plivo.auth_id, fake_plivo.auth_token)
    with httpx.Client(base_url=fake_plivo.url, auth=auth, timeout=5) as client:
        yield client


def _send(raw: httpx.Client, fake: FakePlivo, url: str | None, method: str = "POST", dst: str = DST) -> str:
    body: dict[str, str] = {"src": SRC, "dst": dst, "text": "Your code is 1234"}
    if url is not None:
        body |= {"url": url, "method": method}
    answer = raw.post(fake.messages_path, json=body)
    assert answer.status_code == 202, answer.text
    [message_uuid] = answer.json()["message_uuid"]
    assert isinstance(message_uuid, str)
    return message_uuid


def _url(receiver: Receiver, query: str = "") -> str:
    return f"{receiver.url}/v1/webhooks/plivo/plivo-support/status" + (f"?{query}" if query else "")


def _params(request: RecordedRequest, url: str) -> dict[str, str]:
    """The callback's parameters: the POST form, or for GET the query minus the URL's own."""
    if request.method == "POST":
        return {k: v[0] for k, v in parse_qs(request.body.decode(), keep_blank_values=True).items()}
    own = parse_qs(urlsplit(url).query)
    return {k: v[0] for k, v in request.query.items() if k not in own}


def _sdk_v2_valid(url: str, nonce: str, signature: str, token: str) -> bool:
    parts = urlsplit(url)
    base = f"{parts.scheme}://{parts.netloc}{parts.path}"
    expected = base64.encodebytes(hmac.new(token.encode(), (base + nonce).encode(), hashlib.sha256).digest())
    return hmac.compare_digest(expected.strip().decode(), signature)


def _sdk_v3_valid(
    method: str, uri: str, nonce: str, token: str, header: str, params: Mapping[str, str]
) -> bool:
    """plivo-python's construct_get_url / construct_post_url / get_signature_v3, restated."""

    def sorted_query(values: Mapping[str, list[str]]) -> str:
        return "&".join("&".join(f"{k}={v}" for v in sorted(values[k])) for k in sorted(values))

    parts = urlsplit(uri)
    base = f"{parts.scheme}://{parts.netloc}{parts.path}"
    query = parse_qs(parts.query, keep_blank_values=True)
    if method == "GET":
        merged = {k: [v] for k, v in params.items()} | query
        text = sorted_query(merged)
        base += "?" + text if text else ""
    else:
        text = sorted_query(query)
        if text or params:
            base += "?" + text
        if text and params:
            base += "."
        base += "".join(f"{k}{params[k]}" for k in sorted(params))
    digest = hmac.new(token.encode(), f"{base}.{nonce}".encode(), hashlib.sha256).digest()
    return base64.encodebytes(digest).strip().decode() in header.split(",")


def _verified(fake: FakePlivo, request: RecordedRequest, url: str) -> bool:
    headers, params = request.headers, _params(request, url)
    v2 = all(
        _sdk_v2_valid(url, headers["x-plivo-signature-v2-nonce"], headers[name], fake.auth_token)
        for name in ("x-plivo-signature-v2", "x-plivo-signature-ma-v2")
    )
    v3 = all(
        _sdk_v3_valid(
            request.method, url, headers["x-plivo-signature-v3-nonce"], fake.auth_token, headers[name], params
        )
        for name in ("x-plivo-signature-v3", "x-plivo-signature-ma-v3")
    )
    return v2 and v3


def test_signing_matches_the_sdk_vectors() -> None:
    """V2 reproduces plivo-python's test vector; V3 builds the SDK's base strings, query or not."""
    assert plivo_v2("https://answer.url", "12345", "my_auth_token") == (
        "ehV3IKhLysWBxC1sy8INm0qGoQYdYsHwuoKjsX7FsXc="
    )
    params = {"To": "14155550100", "Status": "delivered", "MessageUUID": "abc", "From": "14155550199"}
    assert plivo_v3_base("POST", "https://example.com/plivo/status/?a=1", params) == (
        "https://example.com/plivo/status/?a=1.From14155550199MessageUUIDabcStatusdeliveredTo14155550100"
    )
    assert plivo_v3_base("POST", "https://example.com/cb/", params) == (
        "https://example.com/cb/?From14155550199MessageUUIDabcStatusdeliveredTo14155550100"
    )
    assert (
        plivo_v3_base("GET", "https://example.com/cb/?b=2", {"a": "1"}) == "https://example.com/cb/?a=1&b=2"
    )
    assert plivo_v3_base("POST", "https://example.com/cb/", {}) == "https://example.com/cb/"


def test_post_callbacks_go_queued_sent_delivered_with_both_signatures(
    fake_plivo: FakePlivo, receiver: Receiver, raw_plivo: httpx.Client
) -> None:
    """By default: queued → sent → delivered, Sequence 1-3, form POSTs signed with V2 and V3."""
    url = _url(receiver, "conn=plivo-support")
    message_uuid = _send(raw_plivo, fake_plivo, url)

    callbacks = fake_plivo.wait_for_callbacks(3)
    requests = receiver.wait_for_requests(3)

    assert [c.status for c in callbacks] == ["queued", "sent", "delivered"]
    assert all(_verified(fake_plivo, r, url) for r in requests)
    fields = [_params(r, url) for r in requests]
    assert [f["Status"] for f in fields] == ["queued", "sent", "delivered"]
    assert [f["Sequence"] for f in fields] == ["1", "2", "3"]
    delivered = fields[-1]
    assert (delivered["MessageUUID"], delivered["To"], delivered["From"]) == (message_uuid, DST, SRC)
    assert delivered["Type"] == "sms" and delivered["Units"] == "1" and "ErrorCode" not in delivered
    assert {"TotalRate", "TotalAmount", "MCC", "MNC", "MessageTime"} <= set(delivered)
    assert requests[0].content_type == "application/x-www-form-urlencoded"
    assert fake_plivo.violations == []


def test_get_callbacks_carry_the_fields_in_the_query(
    fake_plivo: FakePlivo, receiver: Receiver, raw_plivo: httpx.Client
) -> None:
    """`method: GET`: the fields arrive as query parameters, next to the URL's own, and V3 covers them."""
    url = _url(receiver, "conn=plivo-support")
    _send(raw_plivo, fake_plivo, url, method="GET")

    requests = receiver.wait_for_requests(3)

    assert {r.method for r in requests} == {"GET"} and all(r.body == b"" for r in requests)
    assert requests[-1].query["Status"] == ["delivered"] and requests[-1].query["conn"] == ["plivo-support"]
    assert all(_verified(fake_plivo, r, url) for r in requests)


def test_undelivered_carries_the_error_code_and_retrieve_reports_it(
    fake_plivo: FakePlivo, receiver: Receiver, raw_plivo: httpx.Client
) -> None:
    """`Receipts.undelivered(30)` (spam detected): ErrorCode 30 in the last callback and in the MDR."""
    fake_plivo.receipts_for("+" + DST, Receipts.undelivered(30))
    message_uuid = _send(raw_plivo, fake_plivo, _url(receiver))

    callbacks = fake_plivo.wait_for_callbacks(3)
    record = raw_plivo.get(fake_plivo.message_path(message_uuid))

    assert callbacks[-1].form()["Status"] == "undelivered" and callbacks[-1].form()["ErrorCode"] == "30"
    assert record.status_code == 200
    mdr = record.json()
    assert (mdr["message_state"], mdr["error_code"], mdr["message_uuid"]) == (
        "undelivered",
        "30",
        message_uuid,
    )
    assert (mdr["to_number"], mdr["from_number"], mdr["message_direction"]) == (DST, SRC, "outbound")
    assert mdr["resource_uri"] == fake_plivo.message_path(message_uuid) and mdr["api_id"]
    assert fake_plivo.violations == []


def test_failed_goes_queued_then_failed(
    fake_plivo: FakePlivo, receiver: Receiver, raw_plivo: httpx.Client
) -> None:
    """`Receipts.failed(900)` (insufficient credit): queued, then failed with ErrorCode 900, no `sent`."""
    fake_plivo.receipts_for(DST, Receipts.failed(900))
    _send(raw_plivo, fake_plivo, _url(receiver))

    callbacks = fake_plivo.wait_for_callbacks(2)
    time.sleep(0.2)

    assert [c.form()["Status"] for c in fake_plivo.callbacks] == ["queued", "failed"]
    assert callbacks[-1].form()["ErrorCode"] == "900" and callbacks[-1].form()["Sequence"] == "2"


def test_out_of_order_callbacks_keep_their_sequence(
    fake_plivo: FakePlivo, receiver: Receiver, raw_plivo: httpx.Client
) -> None:
    """`out_of_order()`: delivered arrives first, yet Sequence still says it was the last status."""
    fake_plivo.receipts_for(DST, Receipts.delivered().out_of_order())
    _send(raw_plivo, fake_plivo, _url(receiver))

    fake_plivo.wait_for_callbacks(3)

    fields = [_params(r, _url(receiver)) for r in receiver.requests]
    assert [(f["Status"], f["Sequence"]) for f in fields] == [
        ("delivered", "3"),
        ("sent", "2"),
        ("queued", "1"),
    ]


def test_without_url_nothing_is_sent_and_retrieve_reaches_delivered(
    fake_plivo: FakePlivo, receiver: Receiver, raw_plivo: httpx.Client
) -> None:
    """No `url` in the send: no callbacks; the retrieve endpoint still moves to delivered / "000"."""
    message_uuid = _send(raw_plivo, fake_plivo, None)

    deadline = time.monotonic() + 5
    while (mdr := raw_plivo.get(fake_plivo.message_path(message_uuid)).json())[
        "message_state"
    ] != "delivered":
        assert time.monotonic() < deadline
        time.sleep(0.02)

    assert mdr["error_code"] == "000" and fake_plivo.callbacks == [] and receiver.requests == []


def test_forged_signatures_fail_both_checks(
    fake_plivo: FakePlivo, receiver: Receiver, raw_plivo: httpx.Client
) -> None:
    """`with_forged_signature()`: V2 and V3 headers are present but made with another token."""
    fake_plivo.receipts_for(DST, Receipts.delivered().with_forged_signature())
    url = _url(receiver)
    _send(raw_plivo, fake_plivo, url)

    fake_plivo.wait_for_callbacks(3)

    assert [_verified(fake_plivo, r, url) for r in receiver.requests] == [False, False, False]


def test_retrieve_answers_404_and_401_in_plivo_shape(fake_plivo: FakePlivo, raw_plivo: httpx.Client) -> None:
    """Unknown uuid → 404 {api_id, error}; wrong credentials → 401."""
    path = fake_plivo.message_path("2a340179-e8a9-4b1d-ae2c-9f346e7b6d7d")

    unknown = raw_plivo.get(path)
    wrong = httpx.get(fake_plivo.url + path, auth=(fake_plivo.auth_id, "nope"))

    assert unknown.status_code == 404 and unknown.json()["error"] == "not found" and unknown.json()["api_id"]
    assert wrong.status_code == 401 and wrong.json()["error"] == "authentication failed"


def test_inbound_message_is_signed_and_worded_like_plivo(fake_plivo: FakePlivo, receiver: Receiver) -> None:
    """send_inbound(): From/To without `+`, Text, Type, MessageUUID, signed V2 + V3."""
    url = f"{receiver.url}/v1/webhooks/plivo/plivo-support/inbound"
    callback = fake_plivo.send_inbound(url, from_="+" + DST, to="+" + SRC, text="STOP")

    [request] = receiver.requests
    fields = _params(request, url)
    assert callback.response_status == 204 and callback.kind == "inbound"
    assert (fields["From"], fields["To"], fields["Text"], fields["Type"]) == (DST, SRC, "STOP", "sms")
    assert fields["MessageUUID"] == callback.message_id
    assert _verified(fake_plivo, request, url)
