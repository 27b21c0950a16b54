"""Callbacks signed as each provider signs them, with the providers' own tools (Twilio's SDK,
Plivo's SDK, Ed25519 from `cryptography`), for tests that post to the service."""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from plivo.utils.signature_v3 import construct_post_url, get_signature_v3
from twilio.request_validator import RequestValidator

TWILIO_SID = "AC" + "0123456789abcdef" * 2
TWILIO_TOKEN = "twilio-token-7f3a"
PLIVO_ID = "MAXXXXXXXXXXXXXXXXXX"
PLIVO_TOKEN = "plivo-token-2c9e"


@dataclass(frozen=True)
class Signed:
    body: bytes
    headers: dict[str, str]


def twilio(url: str, fields: dict[str, str], token: str = TWILIO_TOKEN) -> Signed:
    signature = RequestValidator(token).compute_signature(url, fields)
    return Signed(
        urlencode(fields).encode(),
        {"X-Twilio-Signature": signature, "Content-Type": "application/x-www-form-urlencoded"},
    )


def plivo(url: str, fields: dict[str, str], token: str = PLIVO_TOKEN, nonce: str = "81726354") -> Signed:
    signature = get_signature_v3(token.encode(), construct_post_url(url, dict(fields)), nonce.encode())
    return Signed(
        urlencode(fields).encode(),
        {
            "X-Plivo-Signature-V3": signature.decode(),
            "X-Plivo-Signature-V3-Nonce": nonce,
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )


class TelnyxKey:
    def __init__(self) -> None:
        self.private = Ed25519PrivateKey.generate()
        raw = self.private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.public_b64 = base64.b64encode(raw).decode()

    def sign(self, event: dict[str, Any], *, timestamp: int | None = None) -> Signed:
        body = json.dumps(event).encode()
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        signature = self.private.sign(stamp.encode() + b"|" + body)
        return Signed(
            body,
            {
                "telnyx-signature-ed25519": base64.b64encode(signature).decode(),
                "telnyx-timestamp": stamp,
                "Content-Type": "application/json",
            },
        )


def telnyx_event(event_type: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "data": {
            "record_type": "event",
            "id": "0ccc7b54-4df3-4bca-a65a-3da1ecc777f0",
            "event_type": event_type,
            "occurred_at": "2026-12-01T10:00:00.000+00:00",
            "payload": payload,
        },
        "meta": {"attempt": 1, "delivered_to": "https://sms.example.com/"},
    }
