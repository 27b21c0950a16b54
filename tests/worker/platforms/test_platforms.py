"""The platforms' request formats: Retell's signature against the official SDK's, Vapi's shapes."""

from __future__ import annotations

from typing import Any

import pytest

from worker.platforms import BadRequest, retell, vapi

# Made with retell-sdk 6.2.13's own signer (`retell.lib.webhook_auth.symmetric["sign"]`) for this
# body, key and timestamp; its `verify` accepts it one second later.
SDK_BODY = b'{"name":"send_sms","args":{"message":"Your code is 1234"},"call":{"call_id":"call_r1"}}'
SDK_KEY = "key_test_retell_0001"
SDK_STAMP = 1764583200000
SDK_SIGNATURE = "v=1764583200000,d=eb86e5ebac3ba323a35c2011b29b39fa2e93ec1e7ebb960eb621bdf994b209c6"


def test_retell_signature_matches_the_official_sdk() -> None:
    """Our signer makes the SDK's signature; the verifier takes it within five minutes, and
    refuses it later, with another key, or for a body changed by one byte."""
    assert retell.sign(SDK_BODY, SDK_KEY, SDK_STAMP) == SDK_SIGNATURE
    assert retell.verify(SDK_BODY, SDK_KEY, SDK_SIGNATURE, now_ms=SDK_STAMP + 1000)
    assert retell.verify(SDK_BODY, SDK_KEY, SDK_SIGNATURE, now_ms=SDK_STAMP + retell.MAX_SKEW_MS)
    assert not retell.verify(SDK_BODY, SDK_KEY, SDK_SIGNATURE, now_ms=SDK_STAMP + retell.MAX_SKEW_MS + 1)
    assert not retell.verify(SDK_BODY, SDK_KEY, SDK_SIGNATURE, now_ms=SDK_STAMP - retell.MAX_SKEW_MS - 1)
    assert not retell.verify(SDK_BODY, "key_other", SDK_SIGNATURE, now_ms=SDK_STAMP)
    assert not retell.verify(SDK_BODY + b" ", SDK_KEY, SDK_SIGNATURE, now_ms=SDK_STAMP)
    assert not retell.verify(SDK_BODY, None, SDK_SIGNATURE, now_ms=SDK_STAMP)
    assert not retell.verify(SDK_BODY, SDK_KEY, SDK_SIGNATURE.upper(), now_ms=SDK_STAMP)


def test_retell_outbound_call_texts_the_dialed_number() -> None:
    """On an outbound call the customer is `to_number`; the idempotency id depends on the
    function and its arguments only."""
    data: dict[str, Any] = {
        "name": "send_sms",
        "args": {"message": "hi"},
        "call": {
            "call_id": "c1",
            "from_number": "+14155550000",
            "to_number": "+14155551234",
            "direction": "outbound",
        },
    }
    tool, call = retell.parse(data)
    assert call is not None and (call.direction, call.customer_number) == ("outbound", "+14155551234")
    again, _ = retell.parse({**data, "call": {**data["call"], "call_id": "c2"}})
    assert tool.id == again.id and tool.arguments == {"message": "hi"}


def test_vapi_outbound_call_and_malformed_arguments() -> None:
    """`outboundPhoneCall`: the customer is the dialed number; arguments that are not a JSON
    object are a bad request."""
    message = {
        "type": "tool-calls",
        "toolCallList": [{"id": "t1", "function": {"name": "send_sms", "arguments": "{\"message\": \"x\"}"}}],
        "call": {
            "id": "v1", "type": "outboundPhoneCall",
            "customer": {"number": "+14155551234"}, "phoneNumber": {"number": "+14155550000"},
        },
    }  # fmt: skip
    calls, call = vapi.parse(message)
    assert call is not None and (call.direction, call.customer_number, call.from_number) == (
        "outbound", "+14155551234", "+14155550000",
    )  # fmt: skip
    assert calls[0].arguments == {"message": "x"}
    message["toolCallList"] = [{"id": "t1", "function": {"name": "send_sms", "arguments": "[1]"}}]
    with pytest.raises(BadRequest):
        vapi.parse(message)
    assert not vapi.authenticated({"x-vapi-secret": "s"}, "x-vapi-secret", None)
    assert vapi.authenticated({"x-vapi-secret": "s"}, "x-vapi-secret", "s")
