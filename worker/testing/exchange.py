"""What a fake server records and answers: `RecordedRequest`, `Response` and `AcceptedMessage`.

These are plain values, safe to hand to the test thread: the server builds them on its own
thread and never mutates them afterwards.
"""

from __future__ import annotations

import base64
import binascii
import json as jsonlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import httpx


@dataclass(frozen=True)
class RecordedRequest:
    """One HTTP request exactly as the fake received it, plus the contract violations found in it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: httpx.Headers  # case-insensitive, keeps repeated headers
    body: bytes
    received_at: float  # time.monotonic() when the request was complete
    violations: tuple[str, ...] = ()

    def form(self) -> dict[str, str]:
        """The form-encoded body as a dict; a repeated field keeps its first value (see `form_lists`)."""
        return {name: values[0] for name, values in self.form_lists().items()}

    def form_lists(self) -> dict[str, list[str]]:
        """The form-encoded body with every value of repeated fields (Twilio's `MediaUrl`)."""
        return parse_qs(self.body.decode("utf-8"), keep_blank_values=True)

    def json(self) -> Any:
        """The JSON body, decoded (raises `ValueError` if it is not JSON)."""
        return jsonlib.loads(self.body)

    @property
    def content_type(self) -> str:
        """The media type without parameters, lowercased ("" when absent)."""
        value: str = self.headers.get("content-type", "")
        return value.split(";", 1)[0].strip().lower()

    def basic_auth(self) -> tuple[str, str] | None:
        """The (user, password) of an HTTP Basic `Authorization` header, or None."""
        scheme, _, value = self.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, sep, password = base64.b64decode(value, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return (user, password) if sep else None

    def bearer_token(self) -> str | None:
        """The token of an `Authorization: Bearer` header, or None."""
        scheme, _, value = self.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return None
        return value.strip() or None


@dataclass(frozen=True)
class Response:
    """An HTTP answer; the server adds `Content-Length` itself."""

    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> Response:
        """A JSON answer with `Content-Type: application/json`."""
        return cls(
            status,
            jsonlib.dumps(payload).encode(),
            {"Content-Type": "application/json", **(headers or {})},
        )


@dataclass(frozen=True)
class AcceptedMessage:
    """A message the fake provider accepted: what would have reached a handset.

    Tests count these to prove that nothing was sent twice (an idempotent replay adds nothing).
    """

    id: str
    to: str
    sender: str | None
    text: str | None
    received_at: float
