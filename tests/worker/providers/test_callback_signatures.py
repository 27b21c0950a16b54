"""Callback signatures, verified on the raw body by each provider's module, against the
providers' own published algorithms: Twilio's documented example, Plivo's SDK, Telnyx's Ed25519."""

from __future__ import annotations

import base64
import time
from urllib.parse import urlencode

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from plivo.utils.signature_v3 import construct_post_url, get_signature_v3, validate_v3_signature
from pydantic import ValidationError
from twilio.request_validator import RequestValidator

from worker.config.models import Connection
from worker.providers.plivo import PlivoProvider, v3_base, v3_signature
from worker.providers.telnyx import TelnyxProvider
from worker.providers.twilio import TwilioProvider

# -- Twilio ------------------------------------------------------------------------------------

#: Twilio's documented example ("Validating requests"), checked in the SDK's own tests.
TWILIO_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
TWILIO_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+12349013030",
    "Digits": "1234",
    "From": "+12349013030",
    "To": "+18005551212",
}
TWILIO_SIGNATURE = "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


def twilio_connection(token: str = "12345") -> Connection:
    return Connection(
        label="Twilio",
        provider="twilio",
        credentials={"account_sid": "AC" + "0" * 32, "auth_token": token},
    )


def test_twilio_documented_example_verifies() -> None:
    """Twilio's published URL, fields, token and signature verify; a changed field does not."""
    body = urlencode(TWILIO_PARAMS).encode()
    headers = {"X-Twilio-Signature": TWILIO_SIGNATURE}
    assert TwilioProvider.verify_callback(twilio_connection(), url=TWILIO_URL, headers=headers, body=body)
    tampered = urlencode({**TWILIO_PARAMS, "Digits": "1235"}).encode()
    assert not TwilioProvider.verify_callback(
        twilio_connection(), url=TWILIO_URL, headers=headers, body=tampered
    )


def test_twilio_refuses_missing_signature_wrong_token_and_another_url() -> None:
    """No header, another account's token, or the internal URL instead of the public one: refused."""
    body = urlencode(TWILIO_PARAMS).encode()
    signed = {"x-twilio-signature": TWILIO_SIGNATURE}  # headers are case-insensitive
    assert TwilioProvider.verify_callback(twilio_connection(), url=TWILIO_URL, headers=signed, body=body)
    assert not TwilioProvider.verify_callback(twilio_connection(), url=TWILIO_URL, headers={}, body=body)
    assert not TwilioProvider.verify_callback(
        twilio_connection("54321"), url=TWILIO_URL, headers=signed, body=body
    )
    internal = "http://10.0.0.7:8080/myapp.php?foo=1&bar=2"
    assert not TwilioProvider.verify_callback(twilio_connection(), url=internal, headers=signed, body=body)


def test_twilio_signs_every_value_of_a_repeated_field() -> None:
    """A field posted twice is covered with both values (as the SDK signs a MultiDict)."""
    url = "https://sms.example.com/v1/webhooks/twilio/twilio/status"
    body = b"MessageSid=SM1&MessageStatus=delivered&Tag=a&Tag=b"
    signature = RequestValidator("12345").compute_signature(
        url, {"MessageSid": "SM1", "MessageStatus": "delivered", "Tag": "ab"}
    )
    # "Tag" + "a" + "Tag" + "b" differs from "Tag" + "ab": the multi-valued form is what is signed.
    expected = _twilio_multi(url)
    assert signature != expected
    assert TwilioProvider.verify_callback(
        twilio_connection(), url=url, headers={"X-Twilio-Signature": expected}, body=body
    )


def _twilio_multi(url: str) -> str:
    class Multi(dict[str, list[str]]):
        def getall(self, name: str) -> list[str]:
            return self[name]

    form = Multi({"MessageSid": ["SM1"], "MessageStatus": ["delivered"], "Tag": ["a", "b"]})
    return str(RequestValidator("12345").compute_signature(url, form))


def test_twilio_shared_key_scheme_is_refused() -> None:
    """A request signed with a shared key (which we do not hold) is not taken as auth-token signed."""
    body = urlencode(TWILIO_PARAMS).encode()
    headers = {
        "X-Twilio-Signature": TWILIO_SIGNATURE,
        "X-Twilio-Webhooks-Signature-Settings": "key=webhooks_sharedkey_1,algorithm=HMAC_SHA256",
    }
    assert not TwilioProvider.verify_callback(twilio_connection(), url=TWILIO_URL, headers=headers, body=body)


# -- Plivo -------------------------------------------------------------------------------------

PLIVO_TOKEN = "plivo-token-Zm9vYmFy"
PLIVO_FIELDS = {
    "MessageUUID": "2d55b3c4-7fe1-11ef-9f5b-0242ac110003",
    "Status": "delivered",
    "From": "14155550199",
    "To": "14155550100",
    "ErrorCode": "",
}


def plivo_connection(token: str = PLIVO_TOKEN) -> Connection:
    return Connection(
        label="Plivo", provider="plivo", credentials={"auth_id": "MA" + "A" * 18, "auth_token": token}
    )


@pytest.mark.parametrize(
    "url",
    [
        "https://sms.example.com/v1/webhooks/plivo/plivo/status",
        "https://sms.example.com/v1/webhooks/plivo/plivo/status?b=2&a=1&a=0",
        "https://sms.example.com:8443/cb/",
    ],
)
def test_plivo_v3_base_string_and_signature_match_the_sdk(url: str) -> None:
    """Our base string and signature are the SDK's (plivo-python `signature_v3`), with and
    without a query, and the SDK's validator accepts our signature."""
    fields = {k: [v] for k, v in PLIVO_FIELDS.items()}
    assert v3_base(url, fields) == construct_post_url(url, dict(PLIVO_FIELDS)).decode()
    ours = v3_signature(PLIVO_TOKEN, url, fields, "nonce-8213")
    sdk = get_signature_v3(PLIVO_TOKEN.encode(), construct_post_url(url, dict(PLIVO_FIELDS)), b"nonce-8213")
    assert ours == sdk.decode()
    assert validate_v3_signature("POST", url, "nonce-8213", PLIVO_TOKEN, ours, dict(PLIVO_FIELDS))


def test_plivo_documented_base_string() -> None:
    """The base string of providers' documentation example: query, `.`, then the sorted fields."""
    fields = {"From": ["14155550199"], "MessageUUID": ["abc"], "Status": ["delivered"], "To": ["14155550100"]}
    assert (
        v3_base("https://example.com/plivo/status/?a=1", fields)
        == "https://example.com/plivo/status/?a=1.From14155550199MessageUUIDabcStatusdeliveredTo14155550100"
    )
    assert (
        v3_base("https://example.com/cb/", fields)
        == "https://example.com/cb/?From14155550199MessageUUIDabcStatusdeliveredTo14155550100"
    )


def test_plivo_verifies_a_callback_signed_by_the_sdk_and_any_of_several_signatures() -> None:
    """A body signed as Plivo signs it verifies; in a comma-separated list, any match is enough."""
    url = "https://sms.example.com/v1/webhooks/plivo/plivo/status"
    body = urlencode(PLIVO_FIELDS).encode()
    good = get_signature_v3(PLIVO_TOKEN.encode(), construct_post_url(url, dict(PLIVO_FIELDS)), b"n1").decode()
    other = v3_signature("rotated-old-token", url, {k: [v] for k, v in PLIVO_FIELDS.items()}, "n1")
    conn = plivo_connection()
    for header in (good, f"{other},{good}", f"{good}, {other}"):
        headers = {"X-Plivo-Signature-V3": header, "X-Plivo-Signature-V3-Nonce": "n1"}
        assert PlivoProvider.verify_callback(conn, url=url, headers=headers, body=body), header
    refused = [
        {"X-Plivo-Signature-V3": other, "X-Plivo-Signature-V3-Nonce": "n1"},  # another token only
        {"X-Plivo-Signature-V3": good, "X-Plivo-Signature-V3-Nonce": "n2"},  # another nonce
        {"X-Plivo-Signature-V3": good},  # no nonce
        {"X-Plivo-Signature-V2": good, "X-Plivo-Signature-V2-Nonce": "n1"},  # V2 does not cover the body
    ]
    for headers in refused:
        assert not PlivoProvider.verify_callback(conn, url=url, headers=headers, body=body), headers
    tampered = urlencode({**PLIVO_FIELDS, "Status": "undelivered"}).encode()
    headers = {"X-Plivo-Signature-V3": good, "X-Plivo-Signature-V3-Nonce": "n1"}
    assert not PlivoProvider.verify_callback(conn, url=url, headers=headers, body=tampered)
    assert not PlivoProvider.verify_callback(conn, url=url + "?x=1", headers=headers, body=body)


# -- Telnyx ------------------------------------------------------------------------------------


def telnyx_keys() -> tuple[Ed25519PrivateKey, str]:
    private = Ed25519PrivateKey.generate()
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return private, base64.b64encode(public).decode()


def telnyx_connection(public_key: str | None) -> Connection:
    return Connection(
        label="Telnyx", provider="telnyx", credentials={"api_key": "KEY0123"}, webhook_public_key=public_key
    )


def telnyx_headers(private: Ed25519PrivateKey, body: bytes, timestamp: int) -> dict[str, str]:
    signature = private.sign(str(timestamp).encode() + b"|" + body)
    return {
        "telnyx-signature-ed25519": base64.b64encode(signature).decode(),
        "telnyx-timestamp": str(timestamp),
    }


BODY = (
    b'{"data":{"event_type":"message.finalized","id":"e1",'
    b'"payload":{"id":"m1","to":[{"status":"delivered"}]}}}'
)


def test_telnyx_verifies_ed25519_over_timestamp_and_raw_body() -> None:
    """Signed `timestamp|body` with the connection's key: accepted; any change to either: refused."""
    private, public = telnyx_keys()
    conn = telnyx_connection(public)
    now = int(time.time())
    headers = telnyx_headers(private, BODY, now)
    assert TelnyxProvider.verify_callback(conn, url="", headers=headers, body=BODY)
    assert not TelnyxProvider.verify_callback(
        conn, url="", headers=headers, body=BODY.replace(b"delivered", b"expired")
    )
    moved = {**headers, "telnyx-timestamp": str(now + 1)}
    assert not TelnyxProvider.verify_callback(conn, url="", headers=moved, body=BODY)
    _, other_public = telnyx_keys()
    assert not TelnyxProvider.verify_callback(
        telnyx_connection(other_public), url="", headers=headers, body=BODY
    )
    assert not TelnyxProvider.verify_callback(telnyx_connection(None), url="", headers=headers, body=BODY)
    assert not TelnyxProvider.verify_callback(conn, url="", headers={}, body=BODY)
    garbage = {**headers, "telnyx-signature-ed25519": "not base64!"}
    assert not TelnyxProvider.verify_callback(conn, url="", headers=garbage, body=BODY)


def test_telnyx_refuses_timestamps_more_than_300_seconds_away() -> None:
    """A replayed webhook (signature valid, timestamp 301 s old) is refused; 299 s is accepted."""
    private, public = telnyx_keys()
    conn = telnyx_connection(public)
    now = 1_800_000_000.0
    for age, accepted in ((299, True), (301, False), (-301, False), (0, True)):
        headers = telnyx_headers(private, BODY, int(now) - age)
        assert (
            TelnyxProvider.verify_callback(conn, url="", headers=headers, body=BODY, now=now) is accepted
        ), age


def test_webhook_public_key_is_validated_at_load() -> None:
    """The key must be base64 of 32 bytes, and only on a Telnyx connection."""
    _, public = telnyx_keys()
    assert telnyx_connection(public).webhook_public_key == public
    for bad in ("not base64", base64.b64encode(b"x" * 31).decode()):
        with pytest.raises(ValidationError, match="webhook_public_key"):
            telnyx_connection(bad)
    with pytest.raises(ValidationError, match="only telnyx connections"):
        Connection(
            label="T", provider="twilio", webhook_public_key=public,
            credentials={"account_sid": "AC" + "0" * 32, "auth_token": "x"},
        )  # fmt: skip
