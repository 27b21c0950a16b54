"""How Plivo and Telnyx sign their webhooks, for the fakes to sign theirs the same way.

Twilio needs nothing here: the fake signs with twilio's own `RequestValidator.compute_signature`.

Plivo (docs "Signature validation"; plivo-python `plivo/utils/__init__.py`, `plivo/utils/signature_v3.py`):
- V2: base64(HMAC-SHA256(auth token, URL without its query + nonce)); it does not cover the parameters.
- V3: base64(HMAC-SHA256(auth token, `v3_base(method, url, params)` + "." + nonce)), where the base is
  `scheme://host/path`, then for GET `?` + the query and the parameters sorted as `k=v&…`; for POST
  `?` + the URL's own query sorted as `k=v&…` (even when empty, if there are parameters), a `.` when both
  a query and parameters exist, then the parameters sorted by name as `namevalue…`.

Telnyx (team-telnyx/telnyx-python `lib/webhook_verification.py`): `telnyx-signature-ed25519` is the
base64 Ed25519 signature of `f"{telnyx-timestamp}|{raw body}"`; the public key is 32 raw bytes in base64.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from urllib.parse import parse_qs, urlsplit, urlunsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


def plivo_v2(url: str, nonce: str, auth_token: str) -> str:
    """Plivo's V2 signature of a callback to `url` (its query is not signed)."""
    parts = urlsplit(url)
    base = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    return _hmac_b64(auth_token, base + nonce)


def plivo_v3_base(method: str, url: str, params: Mapping[str, str]) -> str:
    """The string Plivo's V3 signature covers, before `.` + nonce (`params`: the form fields)."""
    parts = urlsplit(url)
    root = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    query = parse_qs(parts.query, keep_blank_values=True)
    if method.upper() == "GET":  # the URL's own query wins over a parameter of the same name, as in the SDK
        text = _sorted_query({**{name: [value] for name, value in params.items()}, **query})
        return root + ("?" + text if text else "")
    text = _sorted_query(query)
    base = root
    if text or params:
        base += "?" + text
    if text and params:
        base += "."
    return base + "".join(f"{name}{params[name]}" for name in sorted(params))


def plivo_v3(method: str, url: str, params: Mapping[str, str], nonce: str, auth_token: str) -> str:
    """Plivo's V3 signature of a callback (`params`: the POST form, or the GET parameters)."""
    return _hmac_b64(auth_token, f"{plivo_v3_base(method, url, params)}.{nonce}")


class Ed25519Signer:
    """A Telnyx-style webhook key pair: signs `timestamp|body`, publishes the raw public key."""

    def __init__(self) -> None:
        self._key = Ed25519PrivateKey.generate()

    @property
    def public_key(self) -> str:
        """Base64 of the 32 raw public-key bytes (what Mission Control shows and the worker is given)."""
        raw = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return base64.b64encode(raw).decode()

    def sign(self, timestamp: str, body: bytes) -> str:
        """Base64 of the 64-byte signature over `f"{timestamp}|{body}"`."""
        return base64.b64encode(self._key.sign(timestamp.encode() + b"|" + body)).decode()


def _sorted_query(query: Mapping[str, list[str]]) -> str:
    return "&".join(f"{name}={value}" for name in sorted(query) for value in sorted(query[name]))


def _hmac_b64(key: str, message: str) -> str:
    digest = hmac.new(key.encode(), message.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()
