"""Per-provider receipt normalization: raw callback / status fields -> `ReceiptUpdate`, and the
receipt error tables, checked for completeness against the documented delivery codes."""

from __future__ import annotations

from typing import Any

import pytest

from producers.contract import ErrorCode, Status, tool_message
from worker.providers import plivo, receipt_parser, telnyx, twilio
from worker.providers.plivo import PlivoProvider
from worker.providers.sandbox import SandboxProvider
from worker.providers.telnyx import TelnyxProvider
from worker.providers.twilio import TwilioProvider

# The delivery error codes the providers document (Twilio's error dictionary for status
# callbacks, Plivo's "SMS error codes" page, Telnyx's message error codes). Kept here as data, not
# derived from the tables under test.
TWILIO_DOCUMENTED = [30001, 30002, 30003, 30004, 30005, 30006, 30007, 30008, 30010, 30024, 30034, 30036]
#: The rest of Twilio's 300xx range that a message's `ErrorCode` can carry, with the title of each
#: in Twilio's error dictionary, and the taxonomy code the agent's sentence must come from.
TWILIO_300XX: dict[int, tuple[str, ErrorCode]] = {
    30013: ("Message Time To Live is too big", ErrorCode.INVALID_REQUEST),
    30014: ("'To' attributes are invalid (empty or too long a list)", ErrorCode.INVALID_NUMBER),
    30015: ("Non-supported channel type is used (To/From prefix)", ErrorCode.INVALID_REQUEST),
    30016: ("'To' and 'From' channel types are incompatible", ErrorCode.INVALID_REQUEST),
    30020: ("Internal Failure with Message Scheduling", ErrorCode.PROVIDER_ERROR),
    30021: ("Internal Failure with messaging service orchestrator", ErrorCode.PROVIDER_ERROR),
    30025: ("T-Mobile daily message limit nearly reached (warning)", ErrorCode.RATE_LIMITED),
    30026: ("T-Mobile daily message limit nearly reached (warning)", ErrorCode.RATE_LIMITED),
    30028: ("API version used in the request is invalid", ErrorCode.INVALID_REQUEST),
    30029: ("ContentRetention value used in the request is invalid", ErrorCode.INVALID_REQUEST),
    30030: ("AddressRetention value used in the request is invalid", ErrorCode.INVALID_REQUEST),
    30031: ("MaxRate is not a valid float", ErrorCode.INVALID_REQUEST),
    30033: ("Message sent from a suspended US A2P 10DLC Campaign", ErrorCode.SENDER_INVALID),
    30035: ("Number registration under a US A2P campaign not finished", ErrorCode.SENDER_INVALID),
}
TWILIO_DOCUMENTED += sorted(TWILIO_300XX)
PLIVO_DOCUMENTED = [10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 200, 201, 300, 420, 900, 910, 1000]
TELNYX_DOCUMENTED = [
    "40001", "40002", "40003", "40004", "40005", "40006", "40008", "40009", "40011", "40012",
    "40013", "40014", "40015", "40300",
]  # fmt: skip
#: Words that tell the agent what it can do next.
ACTIONS = ("offer", "ask", "confirm", "START")

TABLES: list[tuple[str, dict[Any, tuple[ErrorCode, str]], list[Any]]] = [
    ("twilio", twilio.RECEIPT_ERRORS, TWILIO_DOCUMENTED),
    ("plivo", plivo.RECEIPT_ERRORS, PLIVO_DOCUMENTED),
    ("telnyx", telnyx.RECEIPT_ERRORS, TELNYX_DOCUMENTED),
]


@pytest.mark.parametrize(("provider", "table", "documented"), TABLES, ids=[t[0] for t in TABLES])
def test_every_documented_delivery_code_has_a_speakable_reason(
    provider: str, table: dict[Any, tuple[ErrorCode, str]], documented: list[Any]
) -> None:
    """Each documented delivery code is in the provider's receipt table, with a taxonomy code and
    a short reason that tells the agent what to offer or ask."""
    missing = [code for code in documented if code not in table]
    assert missing == [], f"{provider}: no receipt reason for {missing}"
    for code, (taxonomy, spoken) in table.items():
        assert isinstance(taxonomy, ErrorCode)
        assert spoken and len(spoken) <= 140, (code, spoken)
        assert any(word in spoken for word in ACTIONS), (code, spoken)
        assert not spoken.endswith("."), "tool_message adds the full stop"


def test_the_causes_an_agent_must_tell_apart_have_their_own_words() -> None:
    """Carrier filtering offers to read it out or another channel; a landline asks for a mobile;
    an unreachable phone asks to check it; STOP opt-outs say how to opt back in."""
    assert "spam" in twilio.RECEIPT_ERRORS[30007][1] and "read it out" in twilio.RECEIPT_ERRORS[30007][1]
    assert twilio.RECEIPT_ERRORS[30006] == (ErrorCode.NOT_MOBILE, twilio.RECEIPT_ERRORS[30006][1])
    assert "mobile number" in twilio.RECEIPT_ERRORS[30006][1]
    assert "check their phone" in twilio.RECEIPT_ERRORS[30003][1]
    assert twilio.RECEIPT_ERRORS[30005][0] == ErrorCode.INVALID_NUMBER
    assert plivo.RECEIPT_ERRORS[200][0] == ErrorCode.RECIPIENT_OPTED_OUT
    assert "START" in plivo.RECEIPT_ERRORS[200][1]
    assert telnyx.RECEIPT_ERRORS["40300"][0] == ErrorCode.RECIPIENT_OPTED_OUT
    assert telnyx.RECEIPT_ERRORS["40001"][0] == ErrorCode.NOT_MOBILE


@pytest.mark.parametrize("code", sorted(TWILIO_300XX))
def test_twilio_request_and_sender_codes_have_their_own_taxonomy_code(code: int) -> None:
    """Each of Twilio's 30013-30035 codes that used to fall to the generic "the carrier didn't
    deliver it" now has the taxonomy code of its cause and a sentence of its own."""
    taxonomy, spoken = twilio.RECEIPT_ERRORS[code]
    assert taxonomy == TWILIO_300XX[code][1], TWILIO_300XX[code][0]
    receipt = TwilioProvider.receipt({"MessageSid": "SM1", "MessageStatus": "failed", "ErrorCode": str(code)})
    assert receipt.error is not None
    error = receipt.error
    assert (error.code, error.provider_code, error.message) == (taxonomy, str(code), spoken)
    assert "didn't deliver it" not in spoken


# -- Twilio ----------------------------------------------------------------------------------------

TWILIO_CALLBACK = {
    "AccountSid": "AC" + "0" * 32,
    "ApiVersion": "2010-04-01",
    "From": "+15005550006",
    "To": "+14155551234",
    "MessageSid": "SM" + "a" * 32,
    "SmsSid": "SM" + "a" * 32,
    "MessageStatus": "delivered",
    "SmsStatus": "delivered",
    "RawDlrDoneDate": "2612011005",
}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("queued", "queued"), ("sending", "sending"), ("sent", "sent"), ("delivered", "delivered"),
     ("read", "delivered"), ("undelivered", "undelivered"), ("failed", "undelivered"),
     ("some_new_status", "queued")],
)  # fmt: skip
def test_twilio_statuses_map_to_ours(raw: str, expected: str) -> None:
    """Twilio's MessageStatus values become ours; an unknown new one publishes nothing."""
    update = TwilioProvider.receipt({**TWILIO_CALLBACK, "MessageStatus": raw})
    assert update.status == expected
    assert update.message_id == "SM" + "a" * 32
    assert update.provider == "twilio"


def test_twilio_delivered_callback_keeps_the_carriers_time() -> None:
    """`RawDlrDoneDate` (YYMMDDhhmm) is the receipt's time."""
    update = TwilioProvider.receipt(TWILIO_CALLBACK)
    assert update.occurred_at is not None and update.occurred_at.isoformat() == "2026-12-01T10:05:00+00:00"
    assert update.error is None


def test_twilio_30007_is_carrier_filtering_the_agent_can_speak() -> None:
    """undelivered + ErrorCode 30007 gives the carrier-filtering sentence."""
    update = TwilioProvider.receipt({**TWILIO_CALLBACK, "MessageStatus": "undelivered", "ErrorCode": "30007"})
    assert update.error is not None
    assert (update.error.code, update.error.provider_code) == (ErrorCode.UNDELIVERED, "30007")
    text = tool_message(Status.UNDELIVERED, update.error.code, update.error.message)
    assert text == (
        "SMS wasn't delivered: the carrier filtered it as spam; offer to read it out or share it another way."
    )


def test_twilio_failed_with_a_send_code_and_unknown_codes_fall_back() -> None:
    """A `failed` receipt with a REST code (21610) uses the send table; an unknown 30xxx code and a
    missing code are plain `undelivered`."""
    opted_out = TwilioProvider.receipt({**TWILIO_CALLBACK, "MessageStatus": "failed", "ErrorCode": "21610"})
    assert opted_out.error is not None and opted_out.error.code == ErrorCode.RECIPIENT_OPTED_OUT
    unknown = TwilioProvider.receipt(
        {**TWILIO_CALLBACK, "MessageStatus": "undelivered", "ErrorCode": "30999"}
    )
    assert unknown.error is not None and unknown.error.code == ErrorCode.UNDELIVERED
    assert unknown.error.provider_code == "30999"
    bare = TwilioProvider.receipt({**TWILIO_CALLBACK, "MessageStatus": "undelivered"})
    assert bare.error is not None and bare.error.provider_code is None


def test_twilio_callback_without_sid_or_status_is_refused() -> None:
    """A body that is not a status callback raises ValueError (the service answers 400)."""
    with pytest.raises(ValueError, match="MessageSid"):
        TwilioProvider.receipt({"MessageStatus": "delivered"})
    with pytest.raises(ValueError):
        TwilioProvider.receipt({"MessageSid": "SM1"})


# -- Plivo -----------------------------------------------------------------------------------------

PLIVO_CALLBACK = {
    "MessageUUID": "db3ce55a-7f1d-11e1-8ea7-1231380bc196",
    "To": "14155551234",
    "From": "14155550000",
    "Type": "sms",
    "Status": "delivered",
    "Units": "1",
    "TotalRate": "0.0050",
    "TotalAmount": "0.0050",
    "ErrorCode": "000",
    "Sequence": "2",
}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("queued", "queued"), ("sent", "sent"), ("delivered", "delivered"), ("undelivered", "undelivered"),
     ("failed", "undelivered"), ("rejected", "undelivered")],
)  # fmt: skip
def test_plivo_statuses_map_to_ours(raw: str, expected: str) -> None:
    """Plivo's Status values become ours; ErrorCode 000 means no error."""
    update = PlivoProvider.receipt({**PLIVO_CALLBACK, "Status": raw})
    assert update.status == expected
    assert update.message_id == PLIVO_CALLBACK["MessageUUID"]


def test_plivo_200_is_a_stop_opt_out() -> None:
    """ErrorCode 200 (blocked by STOP from the destination) is `recipient_opted_out`."""
    update = PlivoProvider.receipt({**PLIVO_CALLBACK, "Status": "undelivered", "ErrorCode": "200"})
    assert update.error is not None
    assert (update.error.code, update.error.provider_code) == (ErrorCode.RECIPIENT_OPTED_OUT, "200")


def test_plivo_callback_without_uuid_is_refused() -> None:
    with pytest.raises(ValueError, match="MessageUUID"):
        PlivoProvider.receipt({"Status": "delivered"})


# -- Telnyx ----------------------------------------------------------------------------------------


def telnyx_event(
    status: str, event_type: str = "message.finalized", errors: list[Any] | None = None
) -> dict[str, Any]:
    """An `OutboundMessageEvent` as Telnyx posts it (the spec's `DeliveryUpdate` webhook)."""
    return {
        "data": {
            "record_type": "event",
            "id": "4ee8c3a6-4995-4309-a3c6-38e3db9ea4be",
            "event_type": event_type,
            "occurred_at": "2026-12-01T10:05:00.000+00:00",
            "payload": {
                "record_type": "message",
                "direction": "outbound",
                "id": "40385f64-5717-4562-b3fc-2c963f66afa6",
                "type": "SMS",
                "from": {"phone_number": "+14155550000", "carrier": "Telnyx", "line_type": "VoIP"},
                "to": [
                    {"phone_number": "+14155551234", "status": status, "carrier": "T-Mobile",
                     "line_type": "Wireless"},
                ],
                "text": "Your code is 1234",
                "parts": 1,
                "errors": errors or [],
            },
        },
        "meta": {"attempt": 1, "delivered_to": "https://example.com/hooks"},
    }  # fmt: skip


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("queued", "queued"), ("sending", "sending"), ("sent", "sent"), ("delivered", "delivered"),
     ("delivery_unconfirmed", "unconfirmed"), ("delivery_failed", "undelivered"),
     ("sending_failed", "undelivered"), ("expired", "undelivered")],
)  # fmt: skip
def test_telnyx_statuses_map_to_ours(raw: str, expected: str) -> None:
    """`to[].status` becomes ours; `delivery_unconfirmed` is `unconfirmed` (probably delivered)."""
    update = TelnyxProvider.receipt(telnyx_event(raw))
    assert update.status == expected
    assert update.message_id == "40385f64-5717-4562-b3fc-2c963f66afa6"
    assert update.occurred_at is not None


def test_telnyx_unconfirmed_is_not_an_error_and_says_do_not_resend() -> None:
    """`delivery_unconfirmed` carries no error, and its sentence tells the agent not to resend."""
    update = TelnyxProvider.receipt(telnyx_event("delivery_unconfirmed"))
    assert update.error is None
    assert "Don't send it again" in tool_message(Status.UNCONFIRMED)


def test_telnyx_delivery_failed_uses_the_first_error_code() -> None:
    """`errors[0].code` (a string) picks the reason; `expired` without a code is `expired`."""
    update = TelnyxProvider.receipt(
        telnyx_event("delivery_failed", errors=[{"code": "40300", "title": "Blocked"}])
    )
    assert update.error is not None
    assert (update.error.code, update.error.provider_code) == (ErrorCode.RECIPIENT_OPTED_OUT, "40300")
    expired = TelnyxProvider.receipt(telnyx_event("expired"))
    assert expired.error is not None and expired.error.code == ErrorCode.EXPIRED


def test_telnyx_non_receipt_webhooks_are_refused() -> None:
    """An inbound `message.received` or a body without a payload is not a receipt."""
    with pytest.raises(ValueError, match="event_type"):
        TelnyxProvider.receipt(telnyx_event("delivered", event_type="message.received"))
    with pytest.raises(ValueError):
        TelnyxProvider.receipt({"data": {"event_type": "message.finalized", "payload": {}}})


# -- by name ---------------------------------------------------------------------------------------


def test_receipt_parser_is_found_by_provider_name() -> None:
    """The HTTP service finds each provider's parser by the name in the webhook URL."""
    assert receipt_parser("twilio") == TwilioProvider.receipt
    assert receipt_parser("plivo") == PlivoProvider.receipt
    assert receipt_parser("telnyx") == TelnyxProvider.receipt
    assert receipt_parser("sandbox") == SandboxProvider.receipt
    with pytest.raises(KeyError):
        receipt_parser("custom")
