"""What the provider modules share for callbacks (status receipts and inbound messages).

Each provider module verifies its own signature scheme and parses its own fields; this module
holds the plumbing they have in common: header lookup, form decoding, the malformed-body error,
and number normalization of inbound messages.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

#: the most a callback body may hold; the HTTP service refuses longer ones (413) while reading
MAX_BODY_BYTES = 64 * 1024


class MalformedCallback(ValueError):
    """A signed callback whose body cannot be read as the provider's format (answered 400)."""


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header by name, case-insensitively (HTTP headers are; plain dicts in tests are not)."""
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    return value


def form_lists(body: bytes) -> dict[str, list[str]]:
    """An `application/x-www-form-urlencoded` body, every value of every name, blanks kept."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedCallback("the form body is not UTF-8") from None
    try:
        return parse_qs(text, keep_blank_values=True, strict_parsing=bool(text), errors="strict")
    except (ValueError, UnicodeDecodeError):
        raise MalformedCallback("the body is not a URL-encoded form") from None


def form_fields(body: bytes) -> dict[str, str]:
    """A form body as one value per name (the last, as web frameworks do)."""
    return {name: values[-1] for name, values in form_lists(body).items()}


def json_object(body: bytes) -> dict[str, Any]:
    """A JSON object body."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise MalformedCallback("the body is not JSON") from None
    if not isinstance(data, dict):
        raise MalformedCallback("the JSON body is not an object")
    return data


_SEPARATORS = re.compile(r"[\s().-]")
_E164 = re.compile(r"^\+?\d{3,15}$")


def e164(number: object, *, field: str) -> str:
    """A number from a callback as `+` and digits (Plivo leaves out the `+`; short codes are
    kept). Not checked against numbering plans: the provider delivered to it, so it exists."""
    if not isinstance(number, str) or not number.strip():
        raise MalformedCallback(f"{field}: missing")
    text = _SEPARATORS.sub("", number)
    if not _E164.match(text):
        raise MalformedCallback(f"{field}: not a phone number")
    return text if text.startswith("+") else "+" + text
