"""Phone numbers as Redis keys: a keyed hash (HMAC-SHA256), never the number in clear.

The opt-out list and the per-recipient caps key a number by `hash_number(key, number)`. The key is
`SMS_NUMBER_HASH_KEY` (any string; give every worker, the HTTP service and the CLI the same one, and
keep it out of Redis). When it is not set, a random key is created once in Redis
(`sms:number-hash-key`, `SET NX`) and shared by every process on that Redis: a copy of the opt-out
list alone then reveals no number, but a copy of the whole Redis does (a phone number has too few
digits to survive a search of all of them), so production sets the variable. Changing the key
forgets the opt-outs and caps recorded under the old one.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading

import redis

from worker.settings import Settings

#: Where the generated key lives when SMS_NUMBER_HASH_KEY is not set.
GENERATED_KEY = "sms:number-hash-key"
#: Hex characters of the digest kept (128 bits).
DIGEST_CHARS = 32

_lock = threading.Lock()
_generated: dict[str, bytes] = {}


def hash_key(settings: Settings, client: redis.Redis) -> bytes:
    """The key numbers are hashed with: SMS_NUMBER_HASH_KEY, else the one generated in Redis
    (read once per process and Redis URL)."""
    if settings.number_hash_key is not None:
        return settings.number_hash_key.get_secret_value().encode()
    with _lock:
        found = _generated.get(settings.redis_url)
        if found is None:
            client.set(GENERATED_KEY, secrets.token_hex(32), nx=True)
            value = client.get(GENERATED_KEY)
            found = value if isinstance(value, bytes) else str(value).encode()
            _generated[settings.redis_url] = found
        return found


def forget_generated_keys() -> None:
    """Drop the cached generated keys (tests that wipe Redis between cases)."""
    with _lock:
        _generated.clear()


def hash_number(key: bytes, number: str) -> str:
    """The keyed hash of an E.164 number, as hex."""
    return hmac.new(key, number.encode(), hashlib.sha256).hexdigest()[:DIGEST_CHARS]
