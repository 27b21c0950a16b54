"""The providers' send error tables are complete: every code a provider documents has a place
in the taxonomy, in the class its documentation gives it.

The documented codes are data here, from each provider's own error documentation (Twilio's error
dictionary and test-credential magic numbers, Plivo's Message API statuses and "SMS error codes",
Telnyx's API and messaging error codes), with the kind of failure and the retry guidance the
documentation gives — not a copy of the tables under test, which may map a code to any taxonomy
code of its class. The delivery-receipt tables are held to the documented delivery codes in
`test_receipt_parsing.py`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from producers.contract import RETRYABLE_CODES, ErrorCode
from worker.providers import plivo, telnyx, twilio

#: Kinds of failure, as the providers' documentation describes them, and the taxonomy codes each may map to.
AUTH = frozenset({ErrorCode.AUTH_FAILED})  # credentials or account wrong: fix the config, never retry
RETRY = RETRYABLE_CODES  # documented as safe to retry (throttled, unavailable)
OPT_OUT = frozenset({ErrorCode.RECIPIENT_OPTED_OUT})  # the recipient replied STOP: never retry
RECIPIENT = frozenset({ErrorCode.INVALID_NUMBER, ErrorCode.NOT_MOBILE, ErrorCode.RECIPIENT_NOT_ALLOWED})
SENDER = frozenset({ErrorCode.SENDER_INVALID})
REQUEST = frozenset({ErrorCode.INVALID_REQUEST, ErrorCode.MESSAGE_TOO_LONG, ErrorCode.PROVIDER_ERROR})
TOO_LONG = frozenset({ErrorCode.MESSAGE_TOO_LONG})
EXPIRED = frozenset({ErrorCode.EXPIRED})
#: a delivery failure reported later (callbacks, `error_code` of a fetched message)
CARRIER = frozenset({ErrorCode.UNDELIVERED, ErrorCode.NOT_MOBILE, ErrorCode.INVALID_NUMBER})
ACCOUNT = frozenset({ErrorCode.PROVIDER_ERROR, ErrorCode.AUTH_FAILED})  # credit, suspended account

# Twilio's error dictionary (twilio.com/docs/api/errors) for the codes a Messages create answers
# with, and "Test credentials" (the magic numbers' codes); async 30xxx reach the send table as the
# fallback of a `failed` message's `error_code`.
TWILIO_SEND: dict[int, tuple[str, frozenset[ErrorCode]]] = {
    20003: ("authentication error", AUTH),
    20404: ("resource not found: wrong AccountSid in the path", AUTH),
    20429: ("too many requests; never processed, always safe to retry", RETRY),
    20500: ("internal server error", RETRY),
    20503: ("service unavailable", RETRY),
    21211: ("invalid 'To' phone number", RECIPIENT),
    21212: ("invalid 'From' phone number", SENDER),
    21408: ("permission not enabled for the region of 'To'", RECIPIENT),
    21606: ("'From' is not a message-capable number of this account", SENDER),
    21608: ("trial account: 'To' not verified", RECIPIENT),
    21610: ("attempt to send to an unsubscribed recipient", OPT_OUT),
    21611: ("'From' has exceeded its queue; later", RETRY),
    21612: ("cannot route with this To/From", RECIPIENT),
    21614: ("'To' is not a valid mobile number", RECIPIENT),
    21617: ("body exceeds 1,600 characters", TOO_LONG),
    30003: ("unreachable destination handset", CARRIER),
    30005: ("unknown destination handset", CARRIER),
    30006: ("landline or unreachable carrier", CARRIER),
    30007: ("message filtered by the carrier", CARRIER),
    30008: ("unknown error", CARRIER),
}
# Plivo's Message API: errors by HTTP status (the body's `error` is free text).
PLIVO_HTTP: dict[int, tuple[str, frozenset[ErrorCode]]] = {
    400: ("missing or invalid parameter", REQUEST),
    401: ("authentication failed", AUTH),
    403: ("forbidden, incl. geo permission", RECIPIENT),
    404: ("not found: the Auth ID in the path", AUTH | REQUEST),
    405: ("method not allowed", REQUEST),
    409: ("conflict", REQUEST),
    422: ("unprocessable", REQUEST),
    429: ("rate limited", RETRY),
    500: ("server error", RETRY),
}
# Plivo's "SMS error codes" (the `ErrorCode` of failed/undelivered messages).
PLIVO_DELIVERY: dict[int, tuple[str, frozenset[ErrorCode]]] = {
    10: ("invalid message", CARRIER | REQUEST),
    20: ("network error (temporary)", CARRIER),
    30: ("spam detected", CARRIER),
    40: ("invalid source number", SENDER),
    50: ("invalid destination number", RECIPIENT),
    60: ("loop detected", CARRIER),
    70: ("destination permanently unavailable", CARRIER | RECIPIENT),
    80: ("destination temporarily unavailable", CARRIER),
    90: ("no route available", CARRIER),
    100: ("prohibited by carrier", CARRIER),
    110: ("message too long", TOO_LONG),
    200: ("source number blocked by STOP from the destination", OPT_OUT),
    201: ("US toll-free to Canada blocked", RECIPIENT),
    300: ("failed to dispatch message", CARRIER),
    420: ("message expired", EXPIRED),
    900: ("insufficient credit", ACCOUNT),
    910: ("account disabled", ACCOUNT),
    1000: ("unknown error", CARRIER),
}
# Telnyx's API errors (developers.telnyx.com/api/errors) and messaging error codes.
TELNYX_SEND: dict[str, tuple[str, frozenset[ErrorCode]]] = {
    "10004": ("missing required parameter", REQUEST),
    "10007": ("unexpected error", RETRY),
    "10009": ("authentication failed", AUTH),
    "10010": ("authorization failed", AUTH),
    "10011": ("too many requests", RETRY),
    "10015": ("bad request", REQUEST),
    "10016": ("must be +E.164", RECIPIENT),
    "40001": ("not routable (landline)", RECIPIENT),
    "40002": ("spam (temporary)", CARRIER),
    "40003": ("spam (permanent)", CARRIER),
    "40004": ("rejected by destination", CARRIER),
    "40006": ("recipient unavailable", CARRIER),
    "40008": ("undeliverable", CARRIER),
    "40011": ("upstream rate limit", CARRIER | RETRY),
    "40012": ("invalid destination", RECIPIENT),
    "40013": ("invalid source", SENDER),
    "40014": ("expired in queue", EXPIRED),
    "40015": ("internal spam filter", CARRIER),
    "40300": ("blocked due to STOP", OPT_OUT),
    "40305": ("invalid 'from' address", SENDER),
    "40310": ("invalid 'to' address", RECIPIENT),
}

CASES: list[tuple[str, Mapping[Any, ErrorCode], Mapping[Any, tuple[str, frozenset[ErrorCode]]]]] = [
    ("twilio", twilio.ERROR_TABLE, TWILIO_SEND),
    ("plivo-http", plivo.HTTP_TABLE, PLIVO_HTTP),
    ("plivo-delivery", plivo.ERROR_TABLE, PLIVO_DELIVERY),
    ("telnyx", telnyx.ERROR_TABLE, TELNYX_SEND),
]


def problems(
    table: Mapping[Any, ErrorCode], documented: Mapping[Any, tuple[str, frozenset[ErrorCode]]]
) -> list[str]:
    """What is wrong with `table` against the documented codes: a code left out, or mapped outside
    the class its documentation gives it (a retryable code made permanent, or the reverse)."""
    found = []
    for code, (meaning, allowed) in documented.items():
        mapped = table.get(code)
        if mapped is None:
            found.append(f"{code} ({meaning}): not in the table")
        elif mapped not in allowed:
            found.append(
                f"{code} ({meaning}): {mapped.value}, expected one of {sorted(c.value for c in allowed)}"
            )
    return found


@pytest.mark.parametrize(("table", "documented"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_every_documented_code_is_in_the_table_in_its_documented_class(
    table: Mapping[Any, ErrorCode], documented: Mapping[Any, tuple[str, frozenset[ErrorCode]]]
) -> None:
    """Each provider's send table has every code its documentation lists, each in its class: safe
    to retry only where the provider says so, opt-outs and credentials never retried."""
    assert problems(table, documented) == []


def test_a_missing_or_misclassed_code_is_reported() -> None:
    """The check can fail: a table without 21610, or with a 20429 made permanent, is caught."""
    broken = {code: mapped for code, mapped in twilio.ERROR_TABLE.items() if code != 21610}
    broken[20429] = ErrorCode.PROVIDER_ERROR
    assert problems(broken, TWILIO_SEND) == [
        "20429 (too many requests; never processed, always safe to retry): provider_error, "
        "expected one of ['provider_unavailable', 'rate_limited']",
        "21610 (attempt to send to an unsubscribed recipient): not in the table",
    ]


def test_the_kinds_agree_with_retryability() -> None:
    """The kinds themselves: only RETRY holds retryable codes among the never-retry kinds."""
    for kind in (AUTH, OPT_OUT, RECIPIENT, SENDER, REQUEST, EXPIRED, CARRIER, ACCOUNT):
        assert not kind & RETRYABLE_CODES
